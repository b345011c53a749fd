"""The bench protocol (bench/README.md) as a Channels consumer."""

from __future__ import annotations

import itertools
import json
import secrets
import time
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

_PREFIX = secrets.token_hex(4)  # one per process, so ids are unique across processes
_ids = itertools.count(1)


class RoomConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """One client socket: its rooms are channel-layer groups, which fan messages out to every
    member in every process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rooms: set[str] = set()

    async def connect(self) -> None:
        await self.accept()
        await self.send_json({"type": "hello"})

    async def disconnect(self, code: int) -> None:
        for room in self.rooms:
            await self.channel_layer.group_discard(room, self.channel_name)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        # Undecodable text becomes a frame with no op, refused below, not a consumer crash.
        try:
            return json.loads(text_data)
        except ValueError:
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            await self._answer(content)
        except (KeyError, TypeError):
            await self.close(code=1003)

    async def _answer(self, content: Any) -> None:
        op = content.get("op") if isinstance(content, dict) else None
        if op == "send":
            room = content["room"]
            message_id = f"{_PREFIX}-{next(_ids)}"
            await self.channel_layer.group_send(
                room,
                {
                    "type": "chat.message",
                    "room": room,
                    "id": message_id,
                    "text": content["text"],
                    "ts": time.time(),
                },
            )
            await self.send_json({"type": "ack", "ref": content.get("ref"), "id": message_id})
        elif op == "join":
            room = content["room"]
            if room not in self.rooms:
                self.rooms.add(room)
                await self.channel_layer.group_add(room, self.channel_name)
            await self.send_json({"type": "joined", "room": room})
        elif op == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.close(code=1003)

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "message",
                "room": event["room"],
                "id": event["id"],
                "text": event["text"],
                "ts": event["ts"],
            }
        )

"""What outlives one connection of `chat-client`: the rooms it is in and where it left each
(to resume with `since`), the room lines go to, what the user typed that is not yet answered,
and the lines still to read from stdin."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from chat_client.options import room_name

HELP = (
    "commands: /join ROOM (and send there), /leave ROOM, /who [ROOM] (who is there), /help;"
    " //text sends /text"
)


@dataclass
class Room:
    name: str
    epoch: str | None = None  # None: the room keeps no history (or not known yet)
    offset: int | None = None  # the last offset received

    def since(self) -> dict[str, Any] | None:
        if self.epoch is None or self.offset is None:
            return None
        return {"offset": self.offset, "epoch": self.epoch}

    def fresh(self, frame: dict[str, Any]) -> bool:
        """Whether a message frame is new here (False for one received already)."""
        offset = frame.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool):
            return True
        if self.offset is not None and offset <= self.offset:
            return False
        self.offset = offset
        return True


@dataclass(frozen=True)
class Outgoing:
    """One line the user typed, as the frame it becomes. A `send` keeps its idempotency key
    across reconnects: resent after a drop, it is published once."""

    op: str  # "send", "join", "leave" or "presence"
    room: str
    text: str = ""
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def frame(self) -> dict[str, Any]:
        if self.op == "send":
            return {"op": "send", "room": self.room, "text": self.text, "idempotency_key": self.key}
        return {"op": self.op, "room": self.room}


def parse_line(line: str, current: str | None) -> Outgoing | str:
    """What a typed line asks for, or the line to print when it asks for nothing valid."""
    if line.startswith("/") and not line.startswith("//"):
        command, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        if command == "help":
            return HELP
        if command == "who" and not argument:
            return Outgoing("presence", current) if current else "! /who ROOM, or /join ROOM first"
        if command in ("join", "leave", "who"):
            op = "presence" if command == "who" else command
            try:
                return Outgoing(op, room_name(argument))
            except argparse.ArgumentTypeError:
                return f"! usage: /{command} ROOM (a room name: letters, digits, _ . : , -)"
        return f"! unknown command /{command}; {HELP}"
    if current is None:
        return "! not in a room: /join ROOM first"
    return Outgoing("send", current, line.removeprefix("/") if line.startswith("//") else line)


class Conversation:
    def __init__(self, rooms: tuple[str, ...], lines: AsyncIterator[str]) -> None:
        self.rooms: dict[str, Room] = {}
        self.wanted = list(rooms)  # rooms from the command line, joined by the first session
        self.current: str | None = rooms[0] if rooms else None
        self.pending: Outgoing | None = None  # taken from stdin, not answered yet
        self._lines = lines
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1)
        self._ended = asyncio.Event()
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for line in self._lines:
                await self._queue.put(line)
        finally:
            await self._queue.put(None)
            self._ended.set()  # every line was taken: the end is all the queue holds

    async def next_line(self) -> str | None:
        """The next line of stdin, None at its end (and after)."""
        if self._ended.is_set() and self._queue.empty():
            return None
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)  # so later calls see the end too
        return line

    def parse(self, line: str) -> Outgoing | str:
        """A typed line as what to send (a /leave takes effect at once: a reconnect in the
        meantime does not join the room again), or the line to print instead."""
        parsed = parse_line(line, self.current)
        if isinstance(parsed, Outgoing) and parsed.op == "leave":
            self.left(parsed.room)
        return parsed

    @property
    def finished(self) -> bool:
        """stdin ended and everything from it was answered."""
        return self._ended.is_set() and self.pending is None

    async def wait_finished(self) -> None:
        await self._ended.wait()

    def joined(self, name: str, frame: dict[str, Any], *, resumed: bool) -> None:
        room = self.rooms.setdefault(name, Room(name))
        epoch, offset = frame.get("epoch"), frame.get("offset")
        epoch = epoch if isinstance(epoch, str) else None
        if not resumed:
            room.offset = offset if isinstance(offset, int) else None
        elif epoch != room.epoch:
            room.offset = None  # a new epoch: whatever is replayed is new
        # else: the replay continues from the offset received last
        room.epoch = epoch

    def left(self, name: str) -> None:
        self.rooms.pop(name, None)
        if self.current == name:
            self.current = next(reversed(self.rooms), None)

    def gap(self, frame: dict[str, Any]) -> None:
        room = self.rooms.get(str(frame.get("room")))
        if room is not None and frame.get("reset"):
            room.epoch = room.offset = None  # a new epoch: offsets start again

    async def close(self) -> None:
        self._pump.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)

"""What every chat instance is told to do over one pub/sub channel (`chat:control`): today,
closing every socket of a user (the API's disconnect: close code 4004)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from service.errors import DISCONNECTED
from service.registry import Sockets

log = logging.getLogger(__name__)

CHANNEL = "chat:control"


class Control:
    """Sends control events, and carries out the ones any instance sent."""

    def __init__(self, publish: Callable[[str, bytes], Awaitable[Any]], sockets: Sockets) -> None:
        self._publish = publish
        self._sockets = sockets

    async def disconnect(self, user_id: str) -> None:
        """Every socket of the user, on every instance, closes with 4004."""
        await self._publish(CHANNEL, json.dumps({"kind": "disconnect", "user": user_id}).encode())

    def event(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            event = None
        if not isinstance(event, dict) or event.get("kind") != "disconnect":
            log.warning("ignored a malformed control event")
            return
        user_id = event.get("user")
        if isinstance(user_id, str):
            for connection in self._sockets.holding("sub", user_id):
                connection.close_soon(DISCONNECTED)

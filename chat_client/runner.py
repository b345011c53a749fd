"""What `chat-client` does on one connection, in order: join (or resume) its rooms, then
carry out each line typed, one at a time, until stdin ends."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from chat_client.api import RoomsApi
from chat_client.commands import Command, Outgoing, RoomCall
from chat_client.console import Console, printable, reason
from chat_client.conversation import Conversation
from chat_client.tokens import Refused


class Request(Protocol):
    """Sends a frame on the connection and waits for its answer: True when accepted."""

    def __call__(self, frame: dict[str, Any], *, rejoin: bool = False) -> Awaitable[bool]: ...


@dataclass(frozen=True)
class Ending:
    """How a connection ended: the close code and reason (1000 when stdin ended and all was
    answered); `fatal` when the rooms asked for on the command line could not be joined."""

    code: int
    reason: str = ""
    fatal: bool = False


FINISHED = Ending(1000)


class Runner:
    """Carries the conversation over one connection. A command taken from stdin stays
    `pending` until it is carried out, so one interrupted by a drop is done on the next
    connection (a `send` with the same idempotency key: published once)."""

    def __init__(
        self, request: Request, conversation: Conversation, console: Console, api: RoomsApi
    ) -> None:
        self._request = request
        self._conversation = conversation
        self._console = console
        self._api = api
        self.established = False  # the rooms were joined

    async def run(self) -> Ending:
        if not await self._rejoin():
            return Ending(1000, fatal=True)
        self.established = True
        conversation = self._conversation
        left = conversation.pending
        if isinstance(left, Outgoing) and left.op == "leave":  # typed while disconnected:
            conversation.pending = None  # the room was not joined again, nothing to send
            self._console.say(printable(f"* left #{left.room}"))
        while True:
            item = conversation.pending
            if item is None:
                line = await conversation.next_line()
                if line is None:
                    return FINISHED
                parsed = conversation.parse(line)
                if isinstance(parsed, str):
                    self._console.say(parsed)
                    continue
                item = conversation.pending = parsed
            conversation.pending = await self._carry_out(item)

    async def _rejoin(self) -> bool:
        """Joins the rooms of the command line (first connection) or resumes those it was in,
        each from the last message it printed there; False when a `--room` was refused."""
        conversation = self._conversation
        for name in conversation.wanted or list(conversation.rooms):
            room = conversation.rooms.get(name)
            since = room.since() if room is not None else None
            frame: dict[str, Any] = {"op": "join", "room": name}
            if since is not None:
                frame["since"] = since
            if not await self._request(frame, rejoin=room is not None):
                if name in conversation.wanted:
                    return False
                conversation.left(name)  # removed meanwhile, say: the refusal was printed
        conversation.wanted = []
        return True

    async def _carry_out(self, item: Command) -> Command | None:
        """Does `item`; returns what is still to do (a created room is joined next)."""
        conversation = self._conversation
        if isinstance(item, RoomCall):
            return await self._call(item)
        if not isinstance(item, Outgoing):
            return None
        before = None
        if item.op == "history" and (room := conversation.rooms.get(item.room)) is not None:
            before = room.history_before()
        if await self._request(item.frame(before)) and item.op == "join":
            conversation.current = item.room
        return None

    async def _call(self, call: RoomCall) -> Command | None:
        what = {
            "create": f"create #{call.room}",
            "invite": f"invite {call.username} to #{call.room}",
            "remove": f"remove {call.username} from #{call.room}",
        }[call.action]
        try:
            await self._api.call(call)
        except Refused as refused:
            self._console.say(f"! {printable(what)} refused: {refused.explain()}")
            return None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._console.say(f"! {printable(what)} failed: {reason(exc)}")
            return None
        if call.action == "create":
            self._console.say(printable(f"* created #{call.room}; /invite USER lets others in"))
            return Outgoing("join", call.room)
        done = "may now join" if call.action == "invite" else "is no longer a member of"
        self._console.say(printable(f"* {call.username} {done} #{call.room}"))
        return None

"""What outlives one connection of `chat-client`: the rooms it is in and where it left each
(to resume with `since`), the room lines go to, what the user typed that is not yet answered,
and the lines still to read from stdin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from chat_client.commands import Command, Local, Outgoing, parse_line


@dataclass
class Room:
    """A joined room: where this client is in its history."""

    name: str
    epoch: str | None = None  # None: the room keeps no history (or not known yet)
    offset: int | None = None  # the last offset received: resumed from with `since`
    earliest: int | None = None  # the earliest offset shown: /history pages back from it
    # The epoch was just named by a `joined`: a reset gap that comes now is that join's (the
    # epoch stays); later, one comes from a repair in place, and the new epoch is unknown.
    just_joined: bool = False

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
        self.just_joined = False
        self.shown(offset)
        return True

    def shown(self, offset: int) -> None:
        if self.earliest is None or offset < self.earliest:
            self.earliest = offset

    def history_before(self) -> int | None:
        """Where the next /history page ends: before the earliest message shown, or after
        the last one known when none was shown (None: the newest)."""
        if self.earliest is not None:
            return self.earliest
        return None if self.offset is None else self.offset + 1

    def restart(self, epoch: str | None) -> None:
        """The room's history started again (a new epoch): its offsets mean nothing now."""
        self.epoch, self.offset, self.earliest = epoch, None, None


class Conversation:
    """The state of one run across its connections; what a typed line does to it at once."""

    def __init__(self, rooms: tuple[str, ...], lines: AsyncIterator[str]) -> None:
        self.rooms: dict[str, Room] = {}
        self.wanted = list(rooms)  # rooms from the command line, joined by the first session
        self.current: str | None = rooms[0] if rooms else None
        self.pending: Command | None = None  # taken from stdin, not carried out yet
        self.me: str | None = None  # this user's name, from the server's hello
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

    def parse(self, line: str) -> Command | str:
        """A typed line as what to do (a /leave takes effect at once: a reconnect in the
        meantime does not join the room again), or the line to print instead."""
        parsed = parse_line(line, self.current, self.me)
        if isinstance(parsed, Outgoing) and parsed.op == "leave":
            self.left(parsed.room)
        if isinstance(parsed, Local):
            return self._local(parsed)
        return parsed

    def _local(self, command: Local) -> str:
        if command.op == "switch":
            if command.room not in self.rooms:
                return f"! not in #{command.room}: /join {command.room} first"
            self.current = command.room
            return f"* now typing into #{command.room}"
        if not self.rooms:
            return "* in no room: /join ROOM"
        names = (f"#{n}" + (" (current)" if n == self.current else "") for n in self.rooms)
        return f"* in {', '.join(names)}"

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
        offset = offset if isinstance(offset, int) and not isinstance(offset, bool) else None
        if epoch != room.epoch:
            room.restart(epoch)  # a new epoch: whatever is replayed is new
        if not resumed and (room.offset is None or (offset or 0) > room.offset):
            room.offset = offset  # messages from here on are new
        # else: the replay continues from the offset received last
        room.just_joined = True

    def left(self, name: str) -> None:
        self.rooms.pop(name, None)
        if self.current == name:
            self.current = next(reversed(self.rooms), None)

    def gap(self, frame: dict[str, Any]) -> None:
        room = self.rooms.get(str(frame.get("room")))
        if room is not None and frame.get("reset"):
            room.restart(room.epoch if room.just_joined else None)  # offsets start again

    async def close(self) -> None:
        self._pump.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)

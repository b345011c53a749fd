"""The rooms of one process: who is in each here, and every message delivered to them.

`RoomHub` is the broker's listener for room messages. It subscribes a room while it has
members here (from the first join to the last leave) and hands each message to the members,
whatever protocol they speak (`Member`). In a room with history it keeps the room's order:

- a message is delivered only as the successor of the last one delivered here (`offset`
  + 1); an older one is a duplicate and dropped; a newer one means messages were missed
  (a dropped link, a restarted Redis): it is held back while the missing ones are read from
  history and delivered first, and what history no longer holds is announced as a gap with
  its exact range (`repair`);
- a join with `since` replays what the member missed from a recent read of the room's
  history (`window`), then makes it a member, with no await in between: nothing is
  delivered twice or skipped at the boundary;
- reads of one room's history are single-flight, and a read serves later joins for
  `WINDOW_SECONDS` (kept up to date by what is delivered meanwhile), so a storm of
  reconnecting clients costs one read per room per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from service.broker.base import Broker, BrokerUnavailable
from service.rooms.history import Published, RoomHistory, Stored, Tail
from service.rooms.messages import RoomMessage, parse_payload
from service.rooms.namespaces import Namespaces, Policy

log = logging.getLogger(__name__)

REPLAY_LIMIT = 1000  # messages one join may replay; older ones are announced as a gap
WINDOW_SECONDS = 10.0  # how long one read of a room's history serves later joins
HELD_LIMIT = 10_000  # messages held back during a repair; past it the oldest are let go


class Member(Protocol):
    """A socket in rooms, whatever protocol it speaks."""

    rooms: set[str]

    def deliver(self, message: RoomMessage) -> None:
        """The room's next message (in a room with history: offset order, each once)."""

    def replay(self, messages: list[RoomMessage]) -> None:
        """What a join with `since` missed, in order, before anything live."""

    def gap(self, room: str, first: int | None, last: int | None, *, reset: bool) -> None:
        """Messages `first`..`last` of `room` are lost to this member (both None: which ones
        is unknown, a room without history; `reset`: the room's history was lost)."""


@dataclass(frozen=True)
class Since:
    """Where a client left a room: the last offset it received, of which epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True)
class Joined:
    """What a join found: the room's epoch and offset (None without history) and, for a
    join with `since`, whether nothing was lost."""

    epoch: str | None
    offset: int | None
    recovered: bool | None


@dataclass(eq=False)
class _Room:
    name: str
    policy: Policy
    members: set[Member] = field(default_factory=set)
    joining: int = 0
    ready: bool = False  # epoch and offset known
    epoch: str | None = None
    offset: int = 0  # the last offset delivered here
    reading: asyncio.Task[Tail] | None = None
    during_read: list[RoomMessage] = field(default_factory=list)
    window: list[RoomMessage] | None = None  # contiguous, ending at `offset`
    window_timer: asyncio.TimerHandle | None = None
    repairing: asyncio.Task[None] | None = None
    held: dict[int, RoomMessage] = field(default_factory=dict)


class RoomHub:
    """room -> local members, in order (see the module's docstring)."""

    def __init__(self, broker: Broker, history: RoomHistory, namespaces: Namespaces) -> None:
        self._broker = broker
        self._history = history
        self._namespaces = namespaces
        self._rooms: dict[str, _Room] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.reads = 0  # history reads made (for tests and the bench)

    def rooms(self) -> Iterator[str]:
        return iter(self._rooms)

    def members(self, room: str) -> frozenset[Member]:
        found = self._rooms.get(room)
        return frozenset(found.members) if found is not None else frozenset()

    def policy(self, room: str) -> Policy | None:
        return self._namespaces.policy(room)

    # -- membership ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _room_lock(self, room: str) -> AsyncIterator[None]:
        # Subscribing and unsubscribing one room are serialised, so they cannot cross.
        lock, users = self._locks.get(room, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[room] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[room]
            if users == 1:
                del self._locks[room]
            else:
                self._locks[room] = (lock, users - 1)

    async def join(
        self,
        name: str,
        member: Member,
        policy: Policy,
        *,
        since: Since | None,
        announce: Callable[[Joined], None],
    ) -> None:
        """Makes `member` a member of `name`: `announce` is called with the outcome, then a
        gap and the replay for `since` are handed to the member, then live messages: all
        without an await in between. Raises `BrokerUnavailable` when that cannot be done."""
        async with self._room_lock(name):
            room = self._rooms.get(name)
            if room is None:
                room = self._rooms[name] = _Room(name, policy)
                try:
                    await self._broker.subscribe(name)
                except BrokerUnavailable:
                    del self._rooms[name]
                    raise
            room.joining += 1
        try:
            if policy.history and (not room.ready or (since is not None and room.window is None)):
                await self._read(room)
        except BaseException:
            room.joining -= 1
            await self._drop_if_empty(room)
            raise
        room.joining -= 1
        self._admit(room, member, since, announce)

    def _admit(
        self, room: _Room, member: Member, since: Since | None, announce: Callable[[Joined], None]
    ) -> None:
        if not room.policy.history:
            announce(Joined(None, None, None if since is None else False))
        elif since is None or member in room.members:
            announce(Joined(room.epoch, room.offset, None if since is None else True))
        else:
            self._replay(room, member, since, announce)
        room.members.add(member)
        member.rooms.add(room.name)

    def _replay(
        self, room: _Room, member: Member, since: Since, announce: Callable[[Joined], None]
    ) -> None:
        window = room.window or []
        first = window[0].offset if window else room.offset + 1
        assert first is not None
        if since.epoch != room.epoch:
            announce(Joined(room.epoch, room.offset, False))
            member.gap(room.name, None, None, reset=True)
            replay = window
        else:
            after = min(since.offset, room.offset)
            lost = after + 1 < first
            announce(Joined(room.epoch, room.offset, not lost))
            if lost:
                member.gap(room.name, after + 1, first - 1, reset=False)
            replay = [m for m in window if m.offset is not None and m.offset > after]
        if replay:
            member.replay(replay)

    async def leave(self, name: str, member: Member) -> None:
        member.rooms.discard(name)
        room = self._rooms.get(name)
        if room is None or member not in room.members:
            return
        room.members.discard(member)
        await self._drop_if_empty(room)

    async def remove(self, member: Member) -> None:
        for name in tuple(member.rooms):
            await self.leave(name, member)

    async def _drop_if_empty(self, room: _Room) -> None:
        async with self._room_lock(room.name):
            if room.members or room.joining or self._rooms.get(room.name) is not room:
                return
            del self._rooms[room.name]
            for task in (room.reading, room.repairing):
                if task is not None:
                    task.cancel()
            if room.window_timer is not None:
                room.window_timer.cancel()
            await self._broker.unsubscribe(room.name)

    # -- sending ---------------------------------------------------------------------------

    async def publish(
        self,
        name: str,
        policy: Policy,
        frame: tuple[bytes, bytes],
        *,
        message_id: str,
        idempotency: tuple[str, str] | None,
    ) -> Published:
        """Sends a message whose frame is `frame[0] + <offset> + frame[1]` (in a room without
        history, the offset part is left out). Raises what the history or broker raise."""
        if policy.history:
            return await self._history.publish(
                name,
                self._broker.channel(name),
                frame,
                message_id=message_id,
                size=policy.history_size,
                ttl=policy.history_ttl,
                idempotency=idempotency,
            )
        plain = frame[0][: frame[0].rindex(b',"offset":')] + frame[1]
        if idempotency is None:
            await self._broker.publish(name, plain)  # as without history ever: one PUBLISH
            return Published(None, message_id, None, repeat=False)
        return await self._history.publish_plain(
            self._broker.channel(name),
            plain,
            message_id=message_id,
            room=name,
            idempotency=idempotency,
        )

    async def page(
        self, name: str, policy: Policy, *, before: int | None, limit: int
    ) -> tuple[str | None, list[Stored]]:
        """A page of the room's history (None and nothing in a room without history)."""
        if not policy.history:
            return None, []
        return await self._history.before(name, before=before, limit=limit, ttl=policy.history_ttl)

    # -- receiving (the broker's listener) --------------------------------------------------

    def room_message(self, name: str, payload: bytes) -> None:
        room = self._rooms.get(name)
        message = parse_payload(name, payload)
        if room is None or message is None:
            return
        if message.offset is None:
            for member in room.members:
                member.deliver(message)
            return
        if room.reading is not None:
            room.during_read.append(message)
        if not room.ready or room.repairing is not None:
            self._hold(room, message)
            return
        self._advance(room, message)

    def link_restored(self) -> None:
        """Whatever was published while the link was down was not received: rooms with
        history repair from it; members of rooms without learn that some were lost."""
        for room in self._rooms.values():
            if room.policy.history:
                if room.ready:
                    self._start_repair(room)
            else:
                for member in room.members:
                    member.gap(room.name, None, None, reset=False)

    def _hold(self, room: _Room, message: RoomMessage) -> None:
        assert message.offset is not None
        room.held[message.offset] = message
        if len(room.held) > HELD_LIMIT:
            del room.held[min(room.held)]

    def _advance(self, room: _Room, message: RoomMessage) -> None:
        assert message.offset is not None
        if message.epoch != room.epoch or message.offset > room.offset + 1:
            self._hold(room, message)  # lost messages before it, or a new epoch: repair
            self._start_repair(room)
            return
        if message.offset <= room.offset:
            return  # had it already (delivered live, or by a repair)
        self._deliver(room, message)

    def _deliver(self, room: _Room, message: RoomMessage) -> None:
        assert message.offset is not None
        room.offset = message.offset
        if room.window is not None:
            room.window.append(message)
            if len(room.window) > _window_size(room):
                del room.window[0]
        for member in room.members:
            member.deliver(message)

    # -- reading history -------------------------------------------------------------------

    async def _read(self, room: _Room) -> Tail:
        """The room's tail, read once for everybody waiting on it (see `_read_done`)."""
        if room.reading is None:
            room.during_read = []
            self.reads += 1
            room.reading = asyncio.create_task(
                self._history.tail(room.name, limit=REPLAY_LIMIT, ttl=room.policy.history_ttl)
            )
            room.reading.add_done_callback(lambda task: self._read_done(room, task))
        task = room.reading
        tail = await asyncio.shield(task)
        # Awaiting a read that is already done does not yield, so its done callback may not
        # have run yet: apply it here (once; the callback then finds it applied).
        self._read_done(room, task)
        return tail

    def _read_done(self, room: _Room, task: asyncio.Task[Tail]) -> None:
        if room.reading is not task:
            return  # applied already
        room.reading = None
        arrived, room.during_read = room.during_read, []
        if task.cancelled() or task.exception() is not None:
            return
        tail = task.result()
        window = [RoomMessage(room.name, tail.epoch, s.offset, s.frame) for s in tail.messages]
        for message in arrived:  # delivered live while the read was on its way
            if message.epoch == tail.epoch and message.offset == _last(window, tail) + 1:
                window.append(message)
        if not room.ready:
            room.epoch, room.offset, room.ready = tail.epoch, _last(window, tail), True
        if room.epoch == tail.epoch and _last(window, tail) == room.offset:
            self._set_window(room, window[-_window_size(room) :])
        if room.repairing is None:  # a repair goes on from here itself, in order
            self._release_held(room)

    def _release_held(self, room: _Room) -> None:
        """Messages held back (not ready yet, or repairing), in offset order, now."""
        held, room.held = room.held, {}
        for offset in sorted(held):
            if room.repairing is None:
                self._advance(room, held[offset])
            else:
                room.held[offset] = held[offset]

    def _set_window(self, room: _Room, window: list[RoomMessage] | None) -> None:
        if room.window_timer is not None:
            room.window_timer.cancel()
            room.window_timer = None
        room.window = window
        if window is not None:
            room.window_timer = asyncio.get_running_loop().call_later(
                WINDOW_SECONDS, self._set_window, room, None
            )

    def _start_repair(self, room: _Room) -> None:
        if room.repairing is None and self._rooms.get(room.name) is room:
            room.repairing = asyncio.create_task(self._repair(room))
            room.repairing.add_done_callback(lambda task: self._repaired(room, task))

    async def _repair(self, room: _Room) -> None:
        """Reads the room's history and brings the members up to its end, in order."""
        tail = await self._read(room)
        lost_to = (tail.messages[0].offset if tail.messages else tail.offset + 1) - 1
        if tail.epoch != room.epoch:
            for member in room.members:
                member.gap(room.name, None, None, reset=True)
            room.epoch, room.offset = tail.epoch, lost_to
        elif lost_to > room.offset:
            for member in room.members:
                member.gap(room.name, room.offset + 1, lost_to, reset=False)
            room.offset = lost_to
        self._set_window(room, None)  # what it held may have a hole now: read again
        for stored in tail.messages:
            if stored.offset > room.offset:
                self._deliver(room, RoomMessage(room.name, tail.epoch, stored.offset, stored.frame))

    def _repaired(self, room: _Room, task: asyncio.Task[None]) -> None:
        room.repairing = None
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("could not repair a room from its history; retrying on the next message")
            return
        self._release_held(room)


def _window_size(room: _Room) -> int:
    """No more than history keeps: a join replays the same wherever it is served."""
    return min(REPLAY_LIMIT, room.policy.history_size)


def _last(window: list[RoomMessage], tail: Tail) -> int:
    last = window[-1].offset if window else tail.offset
    assert last is not None
    return last

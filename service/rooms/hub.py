"""The rooms of one process: who is in each here, and every message delivered to them.

`RoomHub` is the broker's listener for room messages. It subscribes a room while it has
members here (from the first join to the last leave), admits members (reading history first
when a join needs it) and hands each message to the room, which delivers it to the members
in order, whatever protocol they speak (`service.rooms.room`). It also publishes and pages
a room's history, with or without history as the room's policy says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
)
from typing import Any

from service.broker.base import UNAVAILABLE, Broker, BrokerUnavailable
from service.metrics import ChatMetrics
from service.native.frames import message_parts
from service.rooms.access import Actor
from service.rooms.history import Published, RoomHistory, Stored
from service.rooms.member import Joined, Member, NotAllowed, Since
from service.rooms.messages import parse_control, parse_payload
from service.rooms.namespaces import Namespaces, Policy
from service.rooms.presence_tracker import PresenceTracker
from service.rooms.private import PrivateRooms
from service.rooms.room import Room

log = logging.getLogger(__name__)


class RoomHub:
    """room -> local members, in order (see the module's docstring)."""

    def __init__(
        self,
        broker: Broker,
        history: RoomHistory,
        namespaces: Namespaces,
        private: PrivateRooms,
        presence: PresenceTracker,
        message_ids: Iterator[str],
        metrics: ChatMetrics,
    ) -> None:
        self._broker = broker
        self._metrics = metrics
        self._history = history
        self._private = private
        self._presence = presence
        self._message_ids = message_ids  # unique across instances
        self._namespaces = namespaces
        self._rooms: dict[str, Room] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.reads = 0  # history reads made (for tests and the bench)
        self._tasks: set[asyncio.Task[None]] = set()

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
        recheck: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Makes `member` a member of `name`: `announce` is called with the outcome, then a
        gap and the replay for `since` are handed to the member, then live messages: all
        without an await in between. `recheck` says again whether the member may join, once
        the room's subscription is in place. Raises `BrokerUnavailable` when that cannot be
        done, `NotAllowed` when the member was removed meanwhile."""
        async with self._room_lock(name):
            room = self._rooms.get(name)
            if room is None:
                room = self._rooms[name] = Room(
                    name, policy, self._history, self._count_read, self._metrics
                )
                try:
                    await self._broker.subscribe(name)
                except BrokerUnavailable:
                    del self._rooms[name]
                    raise
            mark = room.begin_join()
        entered = False
        try:
            # Subscribed now: a removal from here on reaches this room (`removed_since`);
            # one before it shows in the re-check.
            if recheck is not None and not await recheck():
                raise NotAllowed
            if policy.presence and member not in room.members:
                await self._presence.enter(name, member.user_id, member.username)
                entered = True
            if room.needs_read(since):
                await room.read()
            if room.removed_since(mark, member.user_id):
                raise NotAllowed
        except BaseException:
            if entered:
                self._left(room, member, closing=False)
            room.end_join()
            await self._drop_if_empty(room)
            raise
        room.end_join()
        room.admit(member, since, announce)

    def _count_read(self) -> None:
        self.reads += 1

    async def leave(self, name: str, member: Member, *, closing: bool = False) -> None:
        """`member` leaves `name` (`closing`: because its socket closes)."""
        member.exited(name)
        room = self._rooms.get(name)
        if room is None or member not in room.members:
            return
        room.members.discard(member)
        self._left(room, member, closing=closing)
        await self._drop_if_empty(room)

    async def remove(self, member: Member) -> None:
        """A closing socket leaves every room (its presence after the grace)."""
        for name in tuple(member.rooms):
            await self.leave(name, member, closing=True)

    def _left(self, room: Room, member: Member, *, closing: bool) -> None:
        if room.policy.presence:
            self._presence.leave(room.name, member.user_id, member.username, closing=closing)

    async def _drop_if_empty(self, room: Room) -> None:
        async with self._room_lock(room.name):
            if room.members or room.joining or self._rooms.get(room.name) is not room:
                return
            del self._rooms[room.name]
            room.close()
            await self._broker.unsubscribe(room.name)

    # -- sending ---------------------------------------------------------------------------

    async def post(
        self, name: str, policy: Policy, sender: Actor, text: str, *, key: str | None
    ) -> Published:
        """Sends `text` from `sender` (whoever the credential says, on every path) with the
        next message id, idempotent per sender and room when `key` is given."""
        message_id = next(self._message_ids)
        frame = message_parts(name, message_id, sender.public(), text, time.time())
        published = await self.publish(
            name,
            policy,
            frame,
            message_id=message_id,
            idempotency=None if key is None else (sender.id, key),
        )
        self._metrics.messages_in.inc()
        return published

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

    async def position(self, name: str, policy: Policy) -> tuple[str | None, int]:
        """The room's epoch and last offset (None and 0 in a room without history)."""
        if not policy.history:
            return None, 0
        return await self._history.position(name)

    async def page(
        self,
        name: str,
        policy: Policy,
        *,
        before: int | None,
        limit: int,
        after: int | None = None,
    ) -> tuple[str | None, list[Stored]]:
        """A page of the room's history, before `before` (newest first, then put oldest
        first) or after `after` (None and nothing in a room without history)."""
        if not policy.history:
            return None, []
        if after is not None:
            return await self._history.after(name, after=after, limit=limit, ttl=policy.history_ttl)
        return await self._history.before(name, before=before, limit=limit, ttl=policy.history_ttl)

    # -- receiving (the broker's listener) --------------------------------------------------

    def room_message(self, name: str, payload: bytes) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        if payload[:1] == b"!":
            removed = parse_control(payload)
            if removed is not None:
                self._take_out(room, removed)
            return
        message = parse_payload(name, payload)
        if message is not None:
            room.receive(message)

    def _take_out(self, room: Room, user_id: str) -> None:
        """`user_id` ("" for all) is no longer in the room: its sockets here are told, and
        get nothing more from it."""
        for member in room.take_out(user_id):
            self._left(room, member, closing=False)
            member.removed(room.name)
        if not room.members and not room.joining:
            self._background(self._drop_if_empty(room))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def link_restored(self, rooms: Collection[str] | None = None) -> None:
        """Whatever was published to `rooms` (None: all) while their link was down was not
        received: rooms with history repair from it; members of rooms without learn that
        some were lost."""
        names = self._rooms.keys() if rooms is None else rooms
        for room in [self._rooms[name] for name in names if name in self._rooms]:
            room.link_restored()
            if room.policy.join == "members":
                # A removal published while the link was down was lost with it.
                self._background(self._recheck_members(room))

    async def _recheck_members(self, room: Room) -> None:
        users = sorted({member.user_id for member in room.members})
        try:
            still = await self._private.which_members(room.name, users)
        except UNAVAILABLE:
            log.warning("could not re-check a private room's members; the next link retries")
            return
        for user_id in users:
            if user_id not in still and self._rooms.get(room.name) is room:
                self._take_out(room, user_id)

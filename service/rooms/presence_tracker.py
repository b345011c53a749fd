"""This instance's part of presence: which of its sockets are in which rooms, entered and
left in Redis (`PresenceStore`), with a grace for sockets that close.

A socket that leaves a room, or is removed from it, leaves presence at once; a socket that
closes leaves it `grace` seconds later, so a user who reconnects within the grace (to any
instance) makes no `member_left` / `member_joined` pair. What this instance has entered is
recorded against its lease (`InstanceLease`), so that if it dies, another instance takes its
sockets out of presence (`reap`), within the lease and a scan.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from common.backoff import until_done
from common.coalesce import Coalescer
from service.broker.base import UNAVAILABLE
from service.instances import InstanceLease
from service.rooms.presence import Exit, PresenceStore

log = logging.getLogger(__name__)

ROOMS = "rooms"  # the lease's record of the rooms this instance has presence in
DRAIN_MARGIN = 5.0  # seconds past the grace a shutdown waits for exits to be recorded
# Exits whose grace ends together (the sockets of one burst of closes) share pipelines: one
# script each, but one round trip and none of redis-py's per-command cost per socket.
EXITS_PER_BATCH = 256
EXITS_IN_FLIGHT = 2


class PresenceTracker:
    """Enters and leaves presence for this instance's sockets (see the module's docstring)."""

    def __init__(
        self,
        store: PresenceStore,
        lease: InstanceLease,
        channel_of: Callable[[str], str],
        *,
        grace: float,
    ) -> None:
        self._store = store
        self._lease = lease
        self._channel = channel_of
        self._grace = grace
        self._here: Counter[tuple[str, str, str]] = Counter()  # (room, id, name) -> sockets
        self._pending: set[asyncio.Task[None]] = set()
        self._exits: Coalescer[Exit, int] = Coalescer(
            store.exit_all, max_batch=EXITS_PER_BATCH, max_in_flight=EXITS_IN_FLIGHT
        )
        lease.reaper(ROOMS, self._reap)
        lease.on_lost = self.resync

    def __len__(self) -> int:
        """(room, user) pairs this instance holds present."""
        return len(self._here)

    async def enter(self, room: str, user_id: str, username: str) -> None:
        """One more socket of the user in the room. Raises what Redis raises."""
        await self._lease.record(ROOMS, room)
        await self._store.enter(room, self._lease.id, user_id, username, self._channel(room))
        self._here[(room, user_id, username)] += 1

    def leave(self, room: str, user_id: str, username: str, *, closing: bool) -> None:
        """One socket fewer: at once, or after the grace when the socket is closing."""
        key = (room, user_id, username)
        if key not in self._here:
            return  # never entered (nothing to take back)
        self._here[key] -= 1
        if not self._here[key]:
            del self._here[key]
        delay = self._grace if closing else 0.0
        task = asyncio.create_task(self._exit(key, delay=delay))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _exit(self, key: tuple[str, str, str], *, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)  # the grace itself, not a wait for something
        room, user_id, username = key
        leaving: Exit = (room, self._lease.id, user_id, username, self._channel(room))
        await until_done(
            lambda: self._exits(leaving),
            UNAVAILABLE,
            "recording a socket leaving presence",
        )

    async def drain(self) -> None:
        """Waits for every pending exit (each within its grace): on shutdown, so a client
        reconnecting elsewhere within the grace makes no left/joined pair."""
        if not self._pending:
            return
        # Bounded: with Redis away the exits would retry forever; the reaper does them then.
        _, late = await asyncio.wait(self._pending, timeout=self._grace + DRAIN_MARGIN)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _reap(self, dead: str, rooms: list[str]) -> None:
        for room in rooms:
            await self._store.reap(room, dead, self._channel(room))

    async def resync(self) -> None:
        """This instance's lease was reaped while it lived: its sockets are entered again."""
        for (room, user_id, username), sockets in list(self._here.items()):
            for _ in range(sockets):
                try:
                    await self._lease.record(ROOMS, room)
                    await self._store.enter(room, self._lease.id, user_id, username, None)
                except UNAVAILABLE:
                    log.warning("could not enter presence again after a lapsed lease")
                    return

"""One room's members in this process and, in a room with history, the order they see.

A `Room` keeps the room's order in a room with history:

- a message is delivered only as the successor of the last one delivered here (`offset`
  + 1); an older one is a duplicate and dropped; a newer one means messages were missed
  (a dropped link, a restarted Redis): it is held back while the missing ones are read from
  history and delivered first, and what history no longer holds is announced as a gap with
  its exact range (the repair);
- a join with `since` replays what the member missed from a recent read of the room's
  history (the window), then makes it a member, with no await in between: nothing is
  delivered twice or skipped at the boundary;
- reads of the room's history are single-flight, and a read serves later joins for
  `WINDOW_SECONDS` (kept up to date by what is delivered meanwhile), so a storm of
  reconnecting clients costs one read per room per process.

`RoomHub` owns the rooms (subscribing, admitting, dropping them); a `Room` never awaits the
broker and knows nothing of any wire protocol (`Member`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from service.metrics import ChatMetrics
from service.rooms.history import RoomHistory, Tail
from service.rooms.member import Joined, Member, Since
from service.rooms.messages import RoomMessage
from service.rooms.namespaces import Policy

log = logging.getLogger(__name__)

REPLAY_LIMIT = 1000  # messages one join may replay; older ones are announced as a gap
WINDOW_SECONDS = 10.0  # how long one read of a room's history serves later joins
HELD_LIMIT = 10_000  # messages held back during a repair; past it the oldest are let go
MESSAGE_FRAME = b'{"type":"message"'  # in a room without history, what is not presence


class Room:
    """One room here (see the module's docstring)."""

    def __init__(
        self,
        name: str,
        policy: Policy,
        history: RoomHistory,
        on_read: Callable[[], None],
        metrics: ChatMetrics,
    ) -> None:
        self.name = name
        self._metrics = metrics
        self.policy = policy
        self.members: set[Member] = set()
        self.joining = 0  # joins on their way in (the room is not dropped meanwhile)
        # Removals seen while joins are on their way in: (sequence, user id or "" for all).
        self._removals: list[tuple[int, str]] = []
        self._removal_seq = 0
        self._history = history
        self._on_read = on_read
        self._closed = False
        self._ready = False  # epoch and offset known
        self._epoch: str | None = None
        self._offset = 0  # the last offset delivered here
        self._reading: asyncio.Task[Tail] | None = None
        self._during_read: list[RoomMessage] = []
        self._window: list[RoomMessage] | None = None  # contiguous, ending at `_offset`
        self._window_timer: asyncio.TimerHandle | None = None
        self._repairing: asyncio.Task[None] | None = None
        self._held: dict[int, RoomMessage] = {}

    # -- joining ---------------------------------------------------------------------------

    def begin_join(self) -> int:
        """A join is on its way in; returns the mark `removed_since` compares with."""
        self.joining += 1
        return self._removal_seq

    def end_join(self) -> None:
        self.joining -= 1
        if not self.joining:
            self._removals.clear()

    def removed_since(self, mark: int, user_id: str) -> bool:
        """Whether `user_id` was removed (or the room deleted) after `mark`."""
        return any(seq > mark and who in ("", user_id) for seq, who in self._removals)

    def take_out(self, user_id: str) -> list[Member]:
        """A removal of `user_id` ("" for everyone: the room was deleted): the members it
        takes out, no longer in the room; a join on its way in will refuse it too."""
        if self.joining:
            self._removal_seq += 1
            self._removals.append((self._removal_seq, user_id))
        out = [m for m in self.members if not user_id or m.user_id == user_id]
        for member in out:
            self.members.discard(member)
            member.exited(self.name)
        return out

    def needs_read(self, since: Since | None) -> bool:
        """Whether a join must read history first (to learn the offset, or to replay)."""
        if not self.policy.history:
            return False
        return not self._ready or (since is not None and self._window is None)

    def admit(
        self, member: Member, since: Since | None, announce: Callable[[Joined], None]
    ) -> None:
        """`announce`, then the gap and replay for `since`, then membership: no await."""
        if since is not None:
            announce = self._metrics.counting_recoveries(announce)
        if not self.policy.history:
            announce(Joined(None, None, None if since is None else False))
        elif since is None or member in self.members:
            announce(Joined(self._epoch, self._offset, None if since is None else True))
        else:
            self._replay(member, since, announce)
        self.members.add(member)
        member.entered(self.name)

    def _replay(self, member: Member, since: Since, announce: Callable[[Joined], None]) -> None:
        metrics = self._metrics
        window = self._window or []
        first = window[0].offset if window else self._offset + 1
        assert first is not None
        if since.epoch != self._epoch:
            announce(Joined(self._epoch, self._offset, False))
            member.gap(self.name, None, None, reset=True)
            metrics.gaps.inc()
            replay = window
        else:
            after = min(since.offset, self._offset)
            lost = after + 1 < first
            announce(Joined(self._epoch, self._offset, not lost))
            if lost:
                member.gap(self.name, after + 1, first - 1, reset=False)
                metrics.gaps.inc()
            replay = [m for m in window if m.offset is not None and m.offset > after]
        if replay:
            member.replay(replay)
            metrics.replayed.inc(len(replay))

    def close(self) -> None:
        """The room is dropped here: no read, repair or timer outlives it."""
        self._closed = True
        for task in (self._reading, self._repairing):
            if task is not None:
                task.cancel()
        if self._window_timer is not None:
            self._window_timer.cancel()

    # -- receiving -------------------------------------------------------------------------

    def receive(self, message: RoomMessage) -> None:
        """A message from the room's channel."""
        if message.offset is None:
            for member in self.members:
                member.deliver(message)
            if message.frame.startswith(MESSAGE_FRAME):  # not a presence event
                self._delivered(message)
            return
        if self._reading is not None:
            self._during_read.append(message)
        if not self._ready or self._repairing is not None:
            self._hold(message)
            return
        self._advance(message)

    def link_restored(self) -> None:
        """Whatever was published while the link was down was not received."""
        if self.policy.history:
            if self._ready:
                self._start_repair()
        else:
            self._gap(None, None, reset=False)

    def _gap(self, first: int | None, last: int | None, *, reset: bool) -> None:
        for member in self.members:
            member.gap(self.name, first, last, reset=reset)
        self._metrics.gaps.inc(len(self.members))

    def _hold(self, message: RoomMessage) -> None:
        assert message.offset is not None
        self._held[message.offset] = message
        if len(self._held) > HELD_LIMIT:
            del self._held[min(self._held)]

    def _advance(self, message: RoomMessage) -> None:
        assert message.offset is not None
        if message.epoch != self._epoch or message.offset > self._offset + 1:
            self._hold(message)  # lost messages before it, or a new epoch: repair
            self._start_repair()
            return
        if message.offset <= self._offset:
            return  # had it already (delivered live, or by a repair)
        self._deliver(message)

    def _deliver(self, message: RoomMessage) -> None:
        assert message.offset is not None
        self._offset = message.offset
        if self._window is not None:
            self._window.append(message)
            if len(self._window) > self._window_size():
                del self._window[0]
        for member in self.members:
            member.deliver(message)
        self._delivered(message)

    def _delivered(self, message: RoomMessage) -> None:
        """Counts a message handed to the members here: one frame each, one fan-out time."""
        if self.members:
            self._metrics.messages_out.inc(len(self.members))
            self._metrics.observe_fanout(message.frame, time.time())

    # -- reading history -------------------------------------------------------------------

    async def read(self) -> Tail:
        """The room's tail, read once for everybody waiting on it (see `_read_done`)."""
        if self._reading is None:
            self._during_read = []
            self._on_read()
            self._reading = asyncio.create_task(
                self._history.tail(self.name, limit=REPLAY_LIMIT, ttl=self.policy.history_ttl)
            )
            self._reading.add_done_callback(self._read_done)
        task = self._reading
        tail = await asyncio.shield(task)
        # Awaiting a read that is already done does not yield, so its done callback may not
        # have run yet: apply it here (once; the callback then finds it applied).
        self._read_done(task)
        return tail

    def _read_done(self, task: asyncio.Task[Tail]) -> None:
        if self._reading is not task:
            return  # applied already
        self._reading = None
        arrived, self._during_read = self._during_read, []
        if task.cancelled() or task.exception() is not None:
            return
        tail = task.result()
        window = [RoomMessage(self.name, tail.epoch, s.offset, s.frame) for s in tail.messages]
        for message in arrived:  # delivered live while the read was on its way
            if message.epoch == tail.epoch and message.offset == _last(window, tail) + 1:
                window.append(message)
        if not self._ready:
            self._epoch, self._offset, self._ready = tail.epoch, _last(window, tail), True
        if self._epoch == tail.epoch and _last(window, tail) == self._offset:
            self._set_window(window[-self._window_size() :])
        if self._repairing is None:  # a repair goes on from here itself, in order
            self._release_held()

    def _release_held(self) -> None:
        """Messages held back (not ready yet, or repairing), in offset order, now."""
        held, self._held = self._held, {}
        for offset in sorted(held):
            if self._repairing is None:
                self._advance(held[offset])
            else:
                self._held[offset] = held[offset]

    def _set_window(self, window: list[RoomMessage] | None) -> None:
        if self._window_timer is not None:
            self._window_timer.cancel()
            self._window_timer = None
        self._window = window
        if window is not None:
            self._window_timer = asyncio.get_running_loop().call_later(
                WINDOW_SECONDS, self._set_window, None
            )

    def _window_size(self) -> int:
        """No more than history keeps: a join replays the same wherever it is served."""
        return min(REPLAY_LIMIT, self.policy.history_size)

    # -- repairing -------------------------------------------------------------------------

    def _start_repair(self) -> None:
        if self._repairing is None and not self._closed:
            self._repairing = asyncio.create_task(self._repair())
            self._repairing.add_done_callback(self._repaired)

    async def _repair(self) -> None:
        """Reads the room's history and brings the members up to its end, in order."""
        self._metrics.repairs.inc()
        tail = await self.read()
        lost_to = (tail.messages[0].offset if tail.messages else tail.offset + 1) - 1
        if tail.epoch != self._epoch:
            self._gap(None, None, reset=True)
            self._epoch, self._offset = tail.epoch, lost_to
        elif lost_to > self._offset:
            self._gap(self._offset + 1, lost_to, reset=False)
            self._offset = lost_to
        self._set_window(None)  # what it held may have a hole now: read again
        for stored in tail.messages:
            if stored.offset > self._offset:
                self._deliver(RoomMessage(self.name, tail.epoch, stored.offset, stored.frame))

    def _repaired(self, task: asyncio.Task[None]) -> None:
        self._repairing = None
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("could not repair a room from its history; retrying on the next message")
            return
        self._release_held()


def _last(window: list[RoomMessage], tail: Tail) -> int:
    last = window[-1].offset if window else tail.offset
    assert last is not None
    return last

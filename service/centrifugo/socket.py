"""A socket that speaks Centrifugo's client protocol, as a member of rooms."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from service.auth.identity import Identity
from service.centrifugo import codes, frames
from service.connection import Connection
from service.errors import Disconnect
from service.rooms.member import Joined
from service.rooms.messages import RoomMessage

# A Centrifugo unsubscribe push: below 2500 the SDK stays unsubscribed, from 2500 it
# subscribes again (recovering from its position).
REMOVED = {"code": 2000, "reason": "removed from the room"}
INSUFFICIENT_STATE = {"code": 2500, "reason": "insufficient state"}


@dataclass
class Subscribing:
    """What a subscribe collects while its room admits the socket: the outcome, whether
    messages were lost, the replay (all of it handed over before the reply is written), and
    live messages that arrive before the reply goes out."""

    joined: Joined | None = None
    lost: bool = False
    replayed: list[RoomMessage] = field(default_factory=list)
    live: list[RoomMessage] = field(default_factory=list)

    def announce(self, joined: Joined) -> None:
        self.joined = joined


class _Translation:
    """The last room message translated, and what it became: a room hands one message to
    all its members in one loop, so each is translated once, not once per socket."""

    message: RoomMessage | None = None
    result: tuple[str, bytes] | None = None

    @classmethod
    def of(cls, message: RoomMessage) -> tuple[str, bytes] | None:
        if cls.message is not message:
            cls.message, cls.result = message, frames.translated(message)
        return cls.result


class CentrifugoSocket(Connection):
    """A `Connection` whose room messages go out as Centrifugo pushes. Each room it is in is
    a subscription: a gap in one is an unsubscribe push with code 2500, after which it
    drops the room's messages until the SDK subscribes again and recovers from its position
    (this protocol has no way to name a gap); a removal is an unsubscribe push with 2000.

    It pings every `ping` seconds (`{}`) once connected; a ping not answered (`{}`) by the
    next one closes it with 3012."""

    __slots__ = ("_pinger", "_pong_due", "dropped", "join_leave", "subscribing")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        identity: Identity,
        **limits: Any,
    ) -> None:
        super().__init__(ws, request, identity, **limits)
        self.subscribing: dict[str, Subscribing] = {}
        self.dropped: set[str] = set()  # rooms in a gap, waiting for the SDK to resubscribe
        self.join_leave: set[str] = set()  # rooms whose subscription asked for join/leave
        self._pinger: asyncio.TimerHandle | None = None
        self._pong_due = False

    # -- as a member of rooms ------------------------------------------------------------------

    def deliver(self, message: RoomMessage) -> None:
        room = message.room
        if room in self.dropped:
            return
        pending = self.subscribing.get(room)
        if pending is not None:
            pending.live.append(message)
            return
        translated = _Translation.of(message)
        if translated is None:
            return
        kind, push = translated
        if kind == "pub" or room in self.join_leave:
            self.send(push)

    def replay(self, messages: list[RoomMessage]) -> None:
        pending = self.subscribing.get(messages[0].room) if messages else None
        if pending is not None:
            pending.replayed.extend(messages)

    def gap(self, room: str, first: int | None, last: int | None, *, reset: bool) -> None:
        pending = self.subscribing.get(room)
        if pending is not None:
            pending.lost = True
        elif room in self.rooms and room not in self.dropped:
            self.dropped.add(room)
            self.send(frames.push(room, "unsubscribe", INSUFFICIENT_STATE))

    def removed(self, room: str) -> None:
        self.dropped.discard(room)
        self.join_leave.discard(room)
        self.send(frames.push(room, "unsubscribe", REMOVED))

    # -- subscribing -----------------------------------------------------------------------

    def begin_subscribe(self, room: str) -> Subscribing:
        self.dropped.discard(room)
        pending = self.subscribing[room] = Subscribing()
        return pending

    def end_subscribe(self, room: str) -> None:
        """The subscribe's reply is out (or it failed): live messages flow from here."""
        pending = self.subscribing.pop(room, None)
        if pending is not None and room in self.rooms:
            for message in pending.live:
                self.deliver(message)

    def left(self, room: str) -> None:
        self.dropped.discard(room)
        self.join_leave.discard(room)

    # -- pings -----------------------------------------------------------------------------

    def start_pings(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        self._pinger = loop.call_later(interval, self._ping, interval)

    def _ping(self, interval: float) -> None:
        if self._pong_due:
            self.close_soon(codes.NO_PONG)
            return
        self._pong_due = True
        self.send(frames.PING)
        self._pinger = asyncio.get_running_loop().call_later(interval, self._ping, interval)

    def pong(self) -> None:
        self._pong_due = False

    def _stop_pings(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None

    # -- closing ---------------------------------------------------------------------------

    def on_the_wire(self, disconnect: Disconnect) -> tuple[int, str]:
        return codes.on_the_wire(disconnect)

    async def close(self, disconnect: Disconnect) -> None:
        self._stop_pings()
        await super().close(disconnect)

    def release(self) -> None:
        self._stop_pings()
        super().release()

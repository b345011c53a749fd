"""A cluster's event link: the classic channels (revocations, control) on any one node.

Classic pub/sub reaches every node of a cluster, so one connection to any node hears every
event; when it drops, the link reconnects to some node (perhaps another) and the listener is
told that events may have been missed.
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from service.broker.base import EventListener
from service.broker.link import Link


class EventLink:
    def __init__(
        self,
        connect: Callable[[], aioredis.Redis],
        channels: tuple[str, ...],
        *,
        probe_interval: float,
        subscribe_timeout: float,
    ) -> None:
        self.link = Link(
            connect,
            self,
            sharded=False,
            fixed=channels,
            probe_interval=probe_interval,
            subscribe_timeout=subscribe_timeout,
            name="events",
        )
        self._listener: EventListener | None = None
        self._was_up = False

    def start(self, listener: EventListener) -> None:
        self._listener = listener
        self.link.start()

    def message(self, channel: str, payload: bytes) -> None:
        assert self._listener is not None
        self._listener.event(channel, payload)

    def up(self, link: Link, channels: frozenset[str]) -> None:
        if self._was_up:
            assert self._listener is not None
            self._listener.link_restored()
        self._was_up = True

    def lost(self, link: Link) -> None:
        """It reconnects to some node on its own."""

    def dropped(self, link: Link, channel: str) -> None:
        """Classic subscriptions are never dropped."""

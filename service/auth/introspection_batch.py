"""Coalescing concurrent first-time look-ups into few requests to the auth service.

A burst of handshakes with credentials the cache has never seen would cost one HTTP request
each, on both sides. Here look-ups queue while `max_requests` requests are already on their
way; whatever queued by the time one is free (or by the end of the event-loop turn in which
it was asked) goes in the next request, at most `max_batch` credentials: one credential
alone is sent to `/introspect` as always, several to `/introspect/batch`. Nothing waits for
a batch to fill, so an idle service answers as fast as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from common.coalesce import Coalescer

Answer = dict[str, Any]
Lookup = tuple[str, str]  # (credential, hint)
Ask = Callable[[Sequence[Lookup]], Awaitable[list[Answer]]]


class LookupBatcher:
    """Queues look-ups and sends them through `ask` in batches of at most `max_batch`, with
    at most `max_requests` requests in flight (a `Coalescer`). `ask` answers every look-up it
    is given, in order, or raises; its exception is each queued caller's."""

    def __init__(self, ask: Ask, *, max_batch: int, max_requests: int) -> None:
        self._batches: Coalescer[Lookup, Answer] = Coalescer(
            ask, max_batch=max_batch, max_in_flight=max_requests
        )

    @property
    def queued(self) -> int:
        return self._batches.queued

    async def lookup(self, credential: str, hint: str) -> Answer:
        return await self._batches((credential, hint))

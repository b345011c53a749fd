"""Coalescing concurrent first-time look-ups into few requests to the auth service.

A burst of handshakes with credentials the cache has never seen would cost one HTTP request
each, on both sides. Here look-ups queue while `max_requests` requests are already on their
way; whatever queued by the time one is free (or by the end of the event-loop turn in which
it was asked) goes in the next request, at most `max_batch` credentials: one credential
alone is sent to `/introspect` as always, several to `/introspect/batch`. Nothing waits for
a batch to fill, so an idle service answers as fast as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Answer = dict[str, Any]
Lookup = tuple[str, str]  # (credential, hint)
Ask = Callable[[Sequence[Lookup]], Awaitable[list[Answer]]]


class LookupBatcher:
    """Queues look-ups and sends them through `ask` in batches of at most `max_batch`, with
    at most `max_requests` requests in flight. `ask` answers every look-up it is given, in
    order, or raises; its exception is each queued caller's."""

    def __init__(self, ask: Ask, *, max_batch: int, max_requests: int) -> None:
        if max_batch < 1 or max_requests < 1:
            raise ValueError("max_batch and max_requests must be at least 1")
        self._ask = ask
        self._max_batch = max_batch
        self._max_requests = max_requests
        self._queue: deque[tuple[Lookup, asyncio.Future[Answer]]] = deque()
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def lookup(self, credential: str, hint: str) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.append(((credential, hint), future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        # At the end of this loop turn, so look-ups asked in the same turn share a request.
        if not self._scheduled and self._queue and self._in_flight < self._max_requests:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        while self._queue and self._in_flight < self._max_requests:
            batch: list[tuple[Lookup, asyncio.Future[Answer]]] = []
            while self._queue and len(batch) < self._max_batch:
                lookup, future = self._queue.popleft()
                if not future.done():  # its caller went away: not worth asking
                    batch.append((lookup, future))
            if not batch:
                return
            self._in_flight += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[Lookup, asyncio.Future[Answer]]]) -> None:
        try:
            try:
                answers = await self._ask([lookup for lookup, _ in batch])
                if len(answers) != len(batch):
                    raise ValueError("the auth service answered a different number of tokens")
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # each caller decides what the failure means
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
        finally:
            self._in_flight -= 1
            self._schedule()

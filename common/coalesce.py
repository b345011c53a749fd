"""Calls made close together, sent together: for per-request work whose fixed cost (a Redis
round trip, redis-py's per-command overhead) dwarfs its own.

Calls queue while `max_in_flight` batches are already on their way; whatever queued by the
time one is free (or by the end of the event-loop turn in which it was made) goes in the
next batch, at most `max_batch` items. Nothing waits for a batch to fill, so a lone call is
sent as soon as it would have been alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]
Abandoned = Callable[[T, R], None]


class Coalescer(Generic[T, R]):
    """Queues items and hands them to `send` in batches. `send` returns one outcome per item,
    in order: a value, or an exception that is that caller's alone; when `send` raises, its
    exception is every caller's in the batch. A caller that went away (was cancelled) before
    its item was sent is left out; one that went away after is reported to `abandoned` with
    the value it would have had, so what the batch did for it can be undone."""

    def __init__(
        self,
        send: Send[T, R],
        *,
        max_batch: int,
        max_in_flight: int,
        abandoned: Abandoned[T, R] | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._send_batch = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._abandoned = abandoned
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        """Items waiting for a batch."""
        return len(self._queue)

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._schedule()
        return await future

    async def drain(self) -> None:
        """Returns once every batch sent so far has been answered."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _schedule(self) -> None:
        # At the end of this loop turn, so calls made in the same turn share a batch.
        if not self._scheduled and self._queue and self._in_flight < self._max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        while self._queue and self._in_flight < self._max_in_flight:
            batch: list[tuple[T, asyncio.Future[R]]] = []
            while self._queue and len(batch) < self._max_batch:
                item, future = self._queue.popleft()
                if not future.done():  # its caller went away: nothing to send
                    batch.append((item, future))
            if not batch:
                return
            self._in_flight += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            try:
                outcomes = await self._send_batch([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise ValueError(f"{len(outcomes)} outcomes for {len(batch)} items")
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # each caller decides what the failure means
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (item, future), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    if not future.done():
                        future.set_exception(outcome)
                elif not future.done():
                    future.set_result(outcome)
                elif self._abandoned is not None:
                    self._abandoned(item, outcome)
        finally:
            self._in_flight -= 1
            self._schedule()

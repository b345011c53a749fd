"""Retry pacing shared by every background loop."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
# Jitter comes from a generator of its own: background loops must not move the global one
# (property-based tests running beside a service watch it).
_JITTER = random.Random()  # noqa: S311 - jitter, not security


class Backoff:
    """Capped exponential backoff with full jitter."""

    def __init__(self, base: float = 0.05, cap: float = 2.0) -> None:
        self._base = base
        self._cap = cap
        self._attempt = 0

    def next(self) -> float:
        delay = min(self._cap, self._base * 2**self._attempt)
        self._attempt += 1
        return _JITTER.uniform(delay / 2, delay)

    @property
    def attempts(self) -> int:
        return self._attempt

    def reset(self) -> None:
        self._attempt = 0


async def until_done(
    call: Callable[[], Awaitable[object]], errors: tuple[type[Exception], ...], what: str
) -> None:
    """Calls `call` until it raises none of `errors`, with backoff: for a write that must
    happen eventually (an exit from presence while Redis is away). Logs the first failure."""
    backoff = Backoff(base=0.2, cap=5.0)
    while True:
        try:
            await call()
            return
        except errors:
            if backoff.attempts == 0:
                log.warning("%s failed; retrying until it succeeds", what)
        await asyncio.sleep(backoff.next())

"""Rate limits on what one socket sends: frames per second with bursts, and a count of
refusals that marks persistent abuse."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Frames per second per socket, the burst allowed, and the refusals tolerated in 10 s."""

    rate: float
    burst: int
    strikes: int

    def guard(self) -> RateGuard:
        return RateGuard(self.rate, self.burst, self.strikes)


class RateGuard:
    """A token bucket of `rate` frames per second with bursts of `burst`, and a count of
    refusals: more than `strikes` refused frames within `window` seconds is persistent abuse."""

    ALLOWED, LIMITED, ABUSIVE = "allowed", "limited", "abusive"
    __slots__ = ("_burst", "_rate", "_refused", "_stamp", "_strikes", "_tokens", "_window",
                 "_window_start")  # fmt: skip

    def __init__(self, rate: float, burst: int, strikes: int, window: float = 10.0) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._strikes = strikes
        self._window = window
        self._refused = 0
        self._window_start = self._stamp

    def check(self) -> str:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return self.ALLOWED
        if now - self._window_start > self._window:
            self._window_start, self._refused = now, 0
        self._refused += 1
        return self.ABUSIVE if self._refused > self._strikes else self.LIMITED

"""Failed handshakes per client address: an address that keeps presenting bad credentials is
refused (429) for the rest of its window, before any of its credentials costs anything."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from common.connection_gate import answer
from common.log_throttle import ConditionLog
from service.errors import Refusal, Refused

log = logging.getLogger(__name__)

REFUSAL = "too many failed handshakes from this address; retry later"


class FailedHandshakes:
    """At most `limit` refused credentials per address per `window` seconds (fixed windows,
    one process; behind a reverse proxy every client shares the proxy's address). At most
    `max_addresses` are tracked: past that the oldest window is forgotten first."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_addresses = max_addresses
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (start, failures)
        self._refusals = ConditionLog(log, "handshakes refused: too many failures from one address")

    def _blocked_for(self, address: str) -> int:
        """Seconds (rounded up) this address is still refused for; 0 if it is not."""
        entry = self._windows.get(address)
        if entry is None:
            return 0
        start, failures = entry
        left = start + self._window - self._clock()
        return math.ceil(left) if left > 0 and failures >= self._limit else 0

    def refuse_if_blocked(self, address: str) -> None:
        """For a request on a connection that was let in before its address was blocked."""
        left = self._blocked_for(address)
        if left:
            self._refusals.hit(remote=address)
            raise Refused(Refusal.ADDRESS_BLOCKED, REFUSAL, retry_after=left)

    def screen(self, address: str) -> bytes | None:
        """The connection screen (see `common.connection_gate`): a blocked address's new
        connections are refused at accept, before any of their requests is read."""
        left = self._blocked_for(address)
        if not left:
            return None
        self._refusals.hit(remote=address)
        return answer("429 Too Many Requests", REFUSAL, retry_after=left)

    def failed(self, address: str) -> None:
        now = self._clock()
        self._forget_before(now - self._window)
        entry = self._windows.get(address)
        if entry is not None and now - entry[0] < self._window:
            self._windows[address] = (entry[0], entry[1] + 1)  # keeps its place: by start
            return
        self._windows.pop(address, None)
        if len(self._windows) >= self._max_addresses:
            del self._windows[next(iter(self._windows))]
        self._windows[address] = (now, 1)

    def _forget_before(self, horizon: float) -> None:
        windows = self._windows
        while windows:
            oldest = next(iter(windows))
            if windows[oldest][0] >= horizon:
                return
            del windows[oldest]

"""When the local signature check of first-time access tokens is worth its cost.

Verifying an Ed25519 signature is the dearest part of a first-time handshake on the chat
core (about a tenth of it), and for a token the auth service then accepts it buys nothing:
the look-up verifies the signature again. It pays off only against a flood of made-up tokens
that pass the cheap checks (shape, header, a published key id, `exp`): each one refused
locally is a look-up saved. So the check is armed by evidence of such a flood: once the auth
service has refused `REFUSALS` access tokens looked up within `WINDOW` seconds, every
first-time token is verified locally for the next `ARMED_FOR` seconds, and each refusal in
that time (the auth service's, or the local check's) extends it, so a flood keeps it armed.
A flood therefore gets at most `REFUSALS` made-up tokens to the auth service before it is
refused locally again, and one paced to stay under the threshold fewer than `REFUSALS` per
`WINDOW` (in batches, each also counted by the per-address failure limit); anything the
cheap checks can refuse is refused in every state. See docs/security.md.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

REFUSALS = 8
WINDOW = 10.0
ARMED_FOR = 60.0


class RefusalAlarm:
    """Counts the access tokens the auth service refused on look-up and says whether
    first-time tokens must pass the local signature check now."""

    def __init__(
        self,
        *,
        refusals: int = REFUSALS,
        window: float = WINDOW,
        armed_for: float = ARMED_FOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if refusals < 1:
            raise ValueError("refusals must be at least 1")
        self._window = window
        self._armed_for = armed_for
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=refusals)
        self._armed_until = -1.0
        self.armings = 0  # times it went from disarmed to armed (for logs and tests)

    @property
    def armed(self) -> bool:
        return self._clock() < self._armed_until

    def refused(self) -> None:
        """The auth service refused an access token that was looked up."""
        now = self._clock()
        self._recent.append(now)
        full = len(self._recent) == self._recent.maxlen
        if self.armed or (full and now - self._recent[0] <= self._window):
            if not self.armed:
                self.armings += 1
            self._armed_until = now + self._armed_for

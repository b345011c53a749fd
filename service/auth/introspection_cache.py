"""What the introspection client remembers: answers, and the revocations that arrived lately.

Both are looked up by what a revocation event names (a `jti`, a `sid`, a user's `sub`, a
signing key's `kid`), never scanned: an event costs the same however many answers are
cached, so a flood of events cannot stall the process. Expired answers are removed as new
ones arrive, not only when somebody asks for them again.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from common import revocation_events

# The introspection fields revocation events name.
FIELDS = tuple(sorted(set(revocation_events.FIELDS.values())))

Answer = dict[str, Any]


def _named(answer: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for field in FIELDS:
        value = answer.get(field)
        if isinstance(value, str):
            yield field, value


class AnswerCache:
    """Introspection answers by credential hash, each with its own expiry, at most
    `max_entries` (the oldest goes first), indexed by the fields revocations name."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Answer]] = {}
        self._expiry: list[tuple[float, str]] = []  # a heap; stale items are skipped
        self._index: dict[tuple[str, str], set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._drop(key)
            return None
        return entry[1]

    def put(self, key: str, answer: Answer, ttl: float) -> None:
        now = self._clock()
        self._purge(now)
        self._drop(key)
        if len(self._entries) >= self._max_entries:
            self._drop(next(iter(self._entries)))
        deadline = now + ttl
        self._entries[key] = (deadline, answer)
        heapq.heappush(self._expiry, (deadline, key))
        for name in _named(answer):
            self._index.setdefault(name, set()).add(key)

    def drop_matching(self, field: str, value: str) -> int:
        """Drops every answer whose `field` is `value`; returns how many."""
        keys = self._index.pop((field, value), ())
        for key in keys:
            self._drop(key)
        return len(keys)

    def clear(self) -> None:
        self._entries.clear()
        self._expiry.clear()
        self._index.clear()

    def _purge(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            deadline, key = heapq.heappop(expiry)
            entry = self._entries.get(key)
            if entry is not None and entry[0] == deadline:
                self._drop(key)
        if len(expiry) > 2 * self._max_entries:  # stale items of replaced or dropped answers
            self._expiry = [(entry[0], key) for key, entry in self._entries.items()]
            heapq.heapify(self._expiry)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for name in _named(entry[1]):
            holders = self._index.get(name)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._index[name]


class RecentRevocations:
    """When each recently revoked (field, value) was announced, for `window` seconds."""

    def __init__(
        self, window: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window
        self._max_entries = max_entries
        self._clock = clock
        self._stamps: dict[tuple[str, str], float] = {}  # in announcement order

    def __len__(self) -> int:
        return len(self._stamps)

    def note(self, field: str, value: str) -> None:
        now = self._clock()
        self._forget_before(now - self._window)
        self._stamps.pop((field, value), None)  # re-announced: move to the end
        if len(self._stamps) >= self._max_entries:
            del self._stamps[next(iter(self._stamps))]
        self._stamps[(field, value)] = now

    def names_since(self, answer: Mapping[str, Any], since: float) -> bool:
        """Whether a revocation naming `answer` was announced at or after `since`."""
        return any(self._stamps.get(name, -1.0) >= since for name in _named(answer))

    def _forget_before(self, horizon: float) -> None:
        stamps = self._stamps
        while stamps:
            oldest = next(iter(stamps))
            if stamps[oldest] >= horizon:
                return
            del stamps[oldest]

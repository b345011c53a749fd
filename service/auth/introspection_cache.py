"""What the introspection client remembers: answers, and the revocations that arrived lately.

Both are looked up by what a revocation event names (a `jti`, a `sid`, a user's `sub`, a
signing key's `kid`), never scanned: an event costs the same however many answers are
cached, so a flood of events cannot stall the process. Expired answers are removed as new
ones arrive, not only when somebody asks for them again.

A first-time credential's answer stays cached while its socket is open (a minute by
default), one per distinct credential: `kept()` holds only the fields the chat service reads,
under keys every answer shares, instead of the auth service's whole JSON document with its
own copy of every key.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from common import revocation_events
from service.name_index import NameIndex

# The introspection fields revocation events name.
FIELDS = tuple(sorted(set(revocation_events.FIELDS.values())))
# The fields of an answer anything here reads (service/auth/chain.py, the revocation index).
READ = ("active", "token_type", "sub", "username", "scope", "client_id", "exp", "jti", "sid",
        "kid")  # fmt: skip
# Values many answers repeat: one string each, not one per answer.
_SHARED = frozenset(("token_type", "scope", "client_id", "kid"))

Answer = dict[str, Any]
Key = str | bytes  # a hash of the credential


def kept(answer: Mapping[str, Any]) -> Answer:
    """What is worth keeping of an answer: the fields in `READ` that it has, as it has them."""
    compact: Answer = {}
    for field in READ:
        if field in answer:
            value = answer[field]
            compact[field] = sys.intern(value) if field in _SHARED and type(value) is str else value
    return compact


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
        self._entries: dict[Key, tuple[float, Answer]] = {}
        self._expiry: list[tuple[float, Key]] = []  # a heap; stale items are skipped
        self._index: NameIndex[Key] = NameIndex()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._drop(key)
            return None
        return entry[1]

    def put(self, key: Key, answer: Answer, ttl: float) -> None:
        now = self._clock()
        self._purge(now)
        self._drop(key)
        if len(self._entries) >= self._max_entries:
            self._drop(next(iter(self._entries)))
        deadline = now + ttl
        self._entries[key] = (deadline, answer)
        heapq.heappush(self._expiry, (deadline, key))
        for field, value in _named(answer):
            self._index.add(field, value, key)

    def drop_matching(self, field: str, value: str) -> int:
        """Drops every answer whose `field` is `value`; returns how many."""
        keys = self._index.pop(field, value)
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

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for field, value in _named(entry[1]):
            self._index.discard(field, value, key)


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

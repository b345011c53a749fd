"""Asking the auth service who holds a credential (RFC 7662), with a short cache."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import aiohttp

from service.auth.introspection_batch import LookupBatcher
from service.auth.introspection_cache import AnswerCache, RecentRevocations, kept
from service.metrics import ChatMetrics

log = logging.getLogger(__name__)

MAX_REASKS = 3
# Look-ups per request (the auth service's `/introspect/batch` takes up to 50), and requests
# in flight at once: more look-ups than that wait and go together in the next request.
MAX_BATCH = 50
MAX_REQUESTS_IN_FLIGHT = 4
# After the auth service answered a batch 404 or 405: how long look-ups go one per request
# before a batch is tried again (an auth service upgraded meanwhile serves batches again).
NO_BATCHES_SECONDS = 300.0
RECENT_REVOCATIONS_SECONDS = 60.0  # longer than any look-up or handshake may take
RECENT_REVOCATIONS_MAX = 100_000
INACTIVE: dict[str, Any] = {"active": False}

_Lookup = tuple[int, float, "asyncio.Task[dict[str, Any]]"]


class IntrospectionUnavailable(Exception):
    """The auth service could not answer (down, slow, or refusing our client credentials)."""


class _NoBatches(IntrospectionUnavailable):
    """The auth service has no `/introspect/batch` (an older release, or a proxy that only
    passes `/introspect`)."""


def _cache_key(token: str, hint: str) -> bytes:
    return hashlib.sha256(f"{hint}\0{token}".encode()).digest()


class IntrospectionClient:
    """Asks the auth service's `/introspect` who holds a credential, with a short cache.

    Active answers are kept for `min(ttl, exp - now)`, inactive ones for `negative_ttl`;
    entries are keyed by a hash of the credential, never the credential itself. Concurrent
    look-ups of one credential share one request. Each revocation event (`revoked()`) drops
    the answers it names and is remembered for a minute, so that an answer computed before
    it but received after it is not believed (`revoked_since()`).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        client_id: str,
        client_secret: str,
        timeout: float,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
        metrics: ChatMetrics,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._url = f"{url}/introspect"
        self._batch_url = f"{url}/introspect/batch"
        self._batches_from = 0.0  # monotonic: batches are not tried before then (_NoBatches)
        self._authorization = aiohttp.encode_basic_auth(client_id, client_secret)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._seconds = timeout
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self.cache = AnswerCache(max_entries)
        # key -> (generation when asked, monotonic time when asked, the request)
        self._inflight: dict[bytes, _Lookup] = {}
        self._generation = 0  # see forget_all()
        self._recent = RecentRevocations(RECENT_REVOCATIONS_SECONDS, RECENT_REVOCATIONS_MAX)
        self.requests = 0  # credentials actually asked about (one request may ask several)
        self._batcher = LookupBatcher(
            self._ask, max_batch=MAX_BATCH, max_requests=MAX_REQUESTS_IN_FLIGHT
        )

    def cached(self, token: str, hint: str) -> dict[str, Any] | None:
        """The cached answer for a credential, if there is one (no request is made)."""
        return self.cache.get(_cache_key(token, hint))

    async def introspect(self, token: str, hint: str) -> dict[str, Any]:
        key = _cache_key(token, hint)
        cached = self.cache.get(key)
        if cached is not None:
            self._metrics.cache_hit.inc()
            return cached
        self._metrics.cache_miss.inc()
        for _ in range(MAX_REASKS):
            entry = self._inflight.get(key)
            if entry is None:
                task = asyncio.create_task(self._fetch(token, hint))
                entry = (self._generation, time.monotonic(), task)
                self._inflight[key] = entry
                task.add_done_callback(functools.partial(self._settle, key, entry))
            asked_at, started, task = entry
            # Shielded: one caller giving up (its client hung up) must not cancel the others'.
            answer = await asyncio.shield(task)
            if asked_at == self._generation:
                # A revocation that arrived while the answer was on its way may be newer.
                return INACTIVE if self.revoked_since(answer, started) else answer
            # Revocations may have been missed meanwhile (see forget_all): ask again. The
            # auth service records a revocation before announcing it.
            if self._inflight.get(key) is entry:
                del self._inflight[key]
        raise IntrospectionUnavailable("the revocation feed kept dropping during the look-up")

    def _settle(self, key: bytes, entry: _Lookup, _done: object) -> None:
        asked_at, started, task = entry
        if self._inflight.get(key) is entry:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if asked_at != self._generation or self.revoked_since(result, started):
            return  # possibly older than a revocation: not worth keeping
        if result.get("active") is True:
            ttl = min(self._ttl, float(result["exp"]) - time.time())
        else:
            ttl = self._negative_ttl
        if ttl > 0:
            self.cache.put(key, result, ttl)

    async def _fetch(self, token: str, hint: str) -> dict[str, Any]:
        self.requests += 1
        metrics = self._metrics
        started = time.monotonic()
        try:
            # Queued behind other requests, then its own: bounded all the same, so a dead
            # auth service answers each handshake 503 in time however many are waiting.
            async with asyncio.timeout(2 * self._seconds):
                answer = await self._batcher.lookup(token, hint)
        except (aiohttp.ClientError, TimeoutError, ValueError, IntrospectionUnavailable) as exc:
            metrics.introspection_failed.inc()
            if isinstance(exc, IntrospectionUnavailable):
                raise IntrospectionUnavailable(str(exc)) from exc
            raise IntrospectionUnavailable(type(exc).__name__) from exc
        finally:
            metrics.introspection_seconds.observe(time.monotonic() - started)
        if answer["active"]:
            metrics.introspection_active.inc()
        else:
            metrics.introspection_inactive.inc()
        return answer

    async def _ask(self, lookups: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """One request for `lookups`: `/introspect` for one, `/introspect/batch` for more."""
        try:
            return await self._request(lookups)
        except aiohttp.ServerDisconnectedError:
            # A pooled connection the auth service closed as idle just as it was reused:
            # introspection changes nothing, so asking once more is safe.
            return await self._request(lookups)

    async def _request(self, lookups: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        if len(lookups) == 1 or time.monotonic() < self._batches_from:
            return list(await asyncio.gather(*(self._one(t, h) for t, h in lookups)))
        try:
            body = await self._post(self._batch_url, {"json": {"tokens": [t for t, _ in lookups]}})
        except _NoBatches:
            log.warning(
                "the auth service has no /introspect/batch; asking one credential per request",
                extra={"for_seconds": NO_BATCHES_SECONDS},
            )
            self._batches_from = time.monotonic() + NO_BATCHES_SECONDS
            return list(await asyncio.gather(*(self._one(t, h) for t, h in lookups)))
        answers = body.get("answers")
        if not isinstance(answers, list) or len(answers) != len(lookups):
            raise IntrospectionUnavailable("batch introspection answered something unexpected")
        for answer in answers:
            _check(answer)
        return [kept(answer) for answer in answers]

    async def _one(self, token: str, hint: str) -> dict[str, Any]:
        return kept(
            await self._post(self._url, {"data": {"token": token, "token_type_hint": hint}})
        )

    async def _post(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._session.post(
            url,
            headers={"Authorization": self._authorization},
            timeout=self._timeout,
            **payload,
        ) as response:
            if response.status != 200:
                if response.status == 401:
                    log.error("the auth service refused our client credentials")
                if url == self._batch_url and response.status in (404, 405):
                    raise _NoBatches(f"batch introspection answered {response.status}")
                raise IntrospectionUnavailable(f"introspection answered {response.status}")
            body: Any = await response.json()
        if url == self._url:
            _check(body)
        elif not isinstance(body, dict):
            raise IntrospectionUnavailable("batch introspection answered something unexpected")
        return cast(dict[str, Any], body)

    def revoked(self, field: str, value: str) -> None:
        """A revocation event: whatever has `value` in its introspection `field` is dead."""
        self._recent.note(field, value)
        self.cache.drop_matching(field, value)

    def revoked_since(self, answer: Mapping[str, Any], since: float) -> bool:
        """Whether a revocation event naming `answer` arrived after `since` (monotonic)."""
        return self._recent.names_since(answer, since)

    def forget_all(self) -> None:
        """Revocation events may have been missed (the subscriber link was down): drops
        every cached answer and has every look-up still in flight asked again."""
        self._generation += 1
        self.cache.clear()


def _check(body: Any) -> None:
    """Raises unless `body` is an RFC 7662 answer we can act on."""
    if not isinstance(body, dict) or not isinstance(body.get("active"), bool):
        raise IntrospectionUnavailable("introspection answered something unexpected")
    if body["active"] and not _well_formed(body):
        raise IntrospectionUnavailable("introspection answered an incomplete identity")


def _well_formed(body: dict[str, Any]) -> bool:
    return (
        isinstance(body.get("sub"), str)
        and isinstance(body.get("exp"), int | float)
        and isinstance(body.get("jti"), str)
        and isinstance(body.get("token_type"), str)
        and isinstance(body.get("kid", ""), str | None)
    )

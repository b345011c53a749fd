"""Brute-force and flood throttles: login attempts per account and per address, and quotas.

A password check is *reserved* before it runs, atomically with the check of the limits, so
concurrent guesses cannot all pass a counter that is only read first and written after the
check: with 5 failures allowed, at most 5 checks of one account are ever in flight or failed
within a window, however many arrive at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from auth_service.errors import too_many
from common.redis import RedisClient

# One dimension (an account, or an address). KEYS: failures, pending (sorted set of
# reservations by time), attempts. ARGV: now (ms), reservation id, failure limit, attempt
# limit, window (s), how long a reservation may stay pending (ms).
# Returns {0} when reserved, else {1 (failures) or 2 (attempts), seconds to wait}.
_RESERVE = """
local now, stale = tonumber(ARGV[1]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - stale)
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return {1, failures >= tonumber(ARGV[3]) and redis.call('TTL', KEYS[1]) or 1}
end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[4]) then
  return {2, redis.call('TTL', KEYS[3])}
end
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[2], stale)
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[5], 'NX')
return {0}
"""

# KEYS: failures, pending, attempts. ARGV: reservation id, outcome ('failed', 'succeeded'
# or 'released'), window (s), whether a success clears the failures ('1' or '0'). A released
# reservation (its check never ran) takes back its attempt too: it cost nobody anything.
_FINISH = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
if ARGV[2] == 'failed' then
  redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3], 'NX')
elseif ARGV[2] == 'succeeded' and ARGV[4] == '1' then
  redis.call('DEL', KEYS[1])
elseif ARGV[2] == 'released' and tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then
  redis.call('DECR', KEYS[3])
end
return 1
"""

PENDING_SECONDS = 30  # a check still unfinished after this was abandoned (a process died)


@dataclass(frozen=True)
class Limits:
    failures: int
    attempts: int


@dataclass(frozen=True)
class _Dimension:
    keys: tuple[str, str, str]
    limits: Limits
    clears_on_success: bool


@dataclass(frozen=True)
class Reservation:
    """A password check allowed to run; `LoginThrottle.finish` must be told its outcome."""

    id: str
    dimensions: tuple[_Dimension, ...]


def _keys(kind: str, name: str) -> tuple[str, str, str]:
    # One hash tag per account or address: a dimension's keys share a cluster slot.
    tag = f"auth:rl:{{{kind}:{name}}}"
    return f"{tag}:failures", f"{tag}:pending", f"{tag}:attempts"


class LoginThrottle:
    """Limits password checks per account and per address: failures (plus checks in flight)
    and attempts, successful or not, per window; past a limit, 429 with `Retry-After`.

    Unknown usernames are counted like known ones, so the answer does not reveal which
    accounts exist. A success clears the account's failures (its owner is not locked out by
    earlier typos), never the address's.
    """

    def __init__(
        self, redis: RedisClient, *, per_user: Limits, per_address: Limits, window: int
    ) -> None:
        self._redis = redis
        self._per_user = per_user
        self._per_address = per_address
        self._window = window
        self._reserve = redis.register_script(_RESERVE)
        self._finish = redis.register_script(_FINISH)

    def _dimensions(self, username: str, address: str) -> tuple[_Dimension, _Dimension]:
        # Hashed: the name is whatever a caller typed, and keys must stay small and uniform.
        name = hashlib.sha256(username.lower().encode()).hexdigest()[:32]
        # The address first: an address that is refused must not touch the account's
        # counters at all, or a blocked address could go on locking accounts out for free.
        return (
            _Dimension(_keys("addr", address), self._per_address, clears_on_success=False),
            _Dimension(_keys("user", name), self._per_user, clears_on_success=True),
        )

    async def reserve(self, username: str, address: str) -> Reservation:
        """Reserves one password check, or raises 429 when either dimension is at a limit."""
        reservation_id = secrets.token_hex(8)
        taken: list[_Dimension] = []
        for dimension in self._dimensions(username, address):
            refused, *wait = await self._reserve(
                keys=list(dimension.keys),
                args=[
                    int(time.time() * 1000),
                    reservation_id,
                    dimension.limits.failures,
                    dimension.limits.attempts,
                    self._window,
                    PENDING_SECONDS * 1000,
                ],
            )
            if refused:
                await self._settle(Reservation(reservation_id, tuple(taken)), "released")
                raise too_many(int(wait[0]) if int(wait[0]) > 0 else self._window)
            taken.append(dimension)
        return Reservation(reservation_id, tuple(taken))

    async def finish(self, reservation: Reservation, *, succeeded: bool) -> None:
        await self._settle(reservation, "succeeded" if succeeded else "failed")

    async def release(self, reservation: Reservation) -> None:
        """The check never ran (the hashing pool refused it): count nothing."""
        await self._settle(reservation, "released")

    async def _settle(self, reservation: Reservation, outcome: str) -> None:
        for dimension in reservation.dimensions:
            await self._finish(
                keys=list(dimension.keys),
                args=[
                    reservation.id,
                    outcome,
                    self._window,
                    "1" if dimension.clears_on_success else "0",
                ],
            )


class AddressQuota:
    """At most `limit` actions per address per window, counted on each try."""

    def __init__(self, redis: RedisClient, *, name: str, limit: int, window: int) -> None:
        self._redis = redis
        self._name = name
        self._limit = limit
        self._window = window

    async def take(self, address: str) -> None:
        key = f"auth:rl:{self._name}:{address}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self._window, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        if count > self._limit:
            raise too_many(ttl)

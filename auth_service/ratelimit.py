"""Brute-force throttles: fixed-window failure counters per account and per address."""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from auth_service.errors import OAuthError


def too_many(retry_after: int) -> OAuthError:
    return OAuthError(
        "too_many_requests",
        "too many attempts; retry later",
        status=429,
        headers={"Retry-After": str(max(retry_after, 1))},
    )


class LoginThrottle:
    """Refuses password checks for an account or address that failed too often recently.

    Counters count failures only, so a user who logs in correctly is never locked out by
    their own successes; unknown usernames are counted like known ones, so the throttle's
    answer does not reveal which accounts exist.
    """

    def __init__(
        self, redis: aioredis.Redis, *, per_user: int, per_address: int, window: int
    ) -> None:
        self._redis = redis
        self._limits = (per_user, per_address)
        self._window = window

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        # Hashed: the name is whatever a caller typed, and keys must stay small and uniform.
        name = hashlib.sha256(username.lower().encode()).hexdigest()[:32]
        return f"auth:rl:user:{name}", f"auth:rl:addr:{address}"

    async def check(self, username: str, address: str) -> None:
        """Raises 429 with `Retry-After` when either counter is at its limit."""
        keys = self._keys(username, address)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            user_count, user_ttl, addr_count, addr_ttl = await pipe.execute()
        for count, ttl, limit in (
            (user_count, user_ttl, self._limits[0]),
            (addr_count, addr_ttl, self._limits[1]),
        ):
            if count is not None and int(count) >= limit:
                raise too_many(ttl if ttl > 0 else self._window)

    async def failed(self, username: str, address: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in self._keys(username, address):
                pipe.incr(key)
                pipe.expire(key, self._window, nx=True)
            await pipe.execute()

    async def succeeded(self, username: str) -> None:
        await self._redis.delete(self._keys(username, "")[0])


class AddressQuota:
    """At most `limit` actions per address per window (registration), counted on each try."""

    def __init__(self, redis: aioredis.Redis, *, name: str, limit: int, window: int) -> None:
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

"""The Redis client's lifecycle inside an aiohttp application."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ReadOnlyError

# Unreachable or slow, or (after a failover, or at maxmemory) refusing writes: all transient.
REDIS_ERRORS: tuple[type[Exception], ...] = (
    aioredis.ConnectionError,
    aioredis.TimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
)


def connect(url: str, *, timeout: float = 2.0, decode: bool = True) -> aioredis.Redis:
    """A pooled client with bounded timeouts, so a dead Redis fails a request, not hangs it.
    `decode=False`: replies are bytes (what is stored is sent on as it is)."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=decode,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )

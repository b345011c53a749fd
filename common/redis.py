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


POOL_SIZE = 128  # Redis connections per process at most
POOL_WAIT = 5.0  # seconds a command waits for a free one before it fails


def connect(url: str, *, timeout: float = 2.0, decode: bool = True) -> aioredis.Redis:
    """A pooled client with bounded timeouts, so a dead Redis fails a request, not hangs it.
    `decode=False`: replies are bytes (what is stored is sent on as it is).

    The pool blocks: past `POOL_SIZE` commands in flight, the next waits for a connection
    (up to `POOL_WAIT`). redis-py's default pool instead fails at once past 100, which a
    storm of handshakes or joins (several commands each) would turn into refusals."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        decode_responses=decode,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it

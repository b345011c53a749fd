"""The Redis client's lifecycle inside an aiohttp application."""

from __future__ import annotations

import redis.asyncio as aioredis

REDIS_ERRORS: tuple[type[Exception], ...] = (
    aioredis.ConnectionError,
    aioredis.TimeoutError,
)


def connect(url: str, *, timeout: float = 2.0) -> aioredis.Redis:
    """A pooled client with bounded timeouts, so a dead Redis fails a request, not hangs it."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )

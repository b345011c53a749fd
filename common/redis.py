"""The Redis client's lifecycle inside an aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from aiohttp import web

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


def redis_context(
    key: web.AppKey[aioredis.Redis], url: Callable[[web.Application], str]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` entry that opens the client at start-up and closes it at shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        client = connect(url(app))
        app[key] = client
        yield
        await client.aclose()

    return context

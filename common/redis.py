"""The Redis client's lifecycle inside an aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

# Unreachable or slow, or (after a failover, or at maxmemory) refusing writes, or a cluster
# failing over or migrating a slot (CLUSTERDOWN, TRYAGAIN): all transient.
REDIS_ERRORS: tuple[type[Exception], ...] = (
    aioredis.ConnectionError,
    aioredis.TimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,  # e.g. no seed of the cluster reachable
    ClusterError,  # redirections exhausted ("TTL exhausted"): a MOVED storm
    AskError,  # MOVED or ASK left over once redirections were exhausted (MovedError is one)
)


POOL_SIZE = 128  # Redis connections per process at most
POOL_WAIT = 5.0  # seconds a command waits for a free one before it fails


RedisClient = aioredis.Redis | RedisCluster  # one Redis, or a Redis Cluster


class GatedCluster(RedisCluster):
    """The cluster client with commands queued past `POOL_SIZE` in flight: its per-node
    connection limit fails a command at once (`MaxConnectionsError`) instead of waiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(POOL_SIZE)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._gate:
            return await super().execute_command(*args, **kwargs)

    async def execute_gated(self, pipe: Any, raise_on_error: bool) -> list[Any]:
        """A pipeline's `execute`, holding one of the `POOL_SIZE` places while it runs."""
        async with self._gate:
            return list(await pipe.execute(raise_on_error=raise_on_error))


async def execute_together(client: RedisClient, queue: Callable[[Any], None]) -> list[Any]:
    """The commands `queue(pipe)` adds, sent as one pipeline (not a transaction; on a
    cluster, one per node): each reply, or its error as a value, in order. What breaks the
    whole exchange (Redis unreachable, a timeout) is raised."""
    async with client.pipeline(transaction=False) as pipe:
        queue(pipe)
        if isinstance(client, GatedCluster):
            return await client.execute_gated(pipe, raise_on_error=False)
        return list(await pipe.execute(raise_on_error=False))


def connect_cluster(
    nodes: tuple[tuple[str, int], ...],
    *,
    timeout: float = 2.0,
    decode: bool = True,
    password: str | None = None,
) -> GatedCluster:
    """A cluster client from seed nodes (the rest of the topology is discovered);
    `password` (REDIS_PASSWORD) is sent to every node it meets."""
    return GatedCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        password=password,
        decode_responses=decode,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        max_connections=POOL_SIZE,
    )


async def prepare(client: RedisClient) -> None:
    """Readies a client before the first burst of commands: a cluster client learns the
    topology once, up front. Left to do it lazily, concurrent first commands race the
    discovery (it replaces node objects whose connections they are using)."""
    if isinstance(client, RedisCluster):
        await client.initialize()


def connect_to(
    url: str,
    cluster_nodes: tuple[tuple[str, int], ...],
    *,
    timeout: float = 2.0,
    decode: bool = True,
    password: str | None = None,
) -> RedisClient:
    """The one place that picks the client: a cluster when seeds are configured
    (`REDIS_CLUSTER_NODES`), else the Redis at `url`."""
    if cluster_nodes:
        return connect_cluster(cluster_nodes, timeout=timeout, decode=decode, password=password)
    return connect(url, timeout=timeout, decode=decode, password=password)


def connect(
    url: str, *, timeout: float = 2.0, decode: bool = True, password: str | None = None
) -> aioredis.Redis:
    """A pooled client with bounded timeouts, so a dead Redis fails a request, not hangs it.
    `decode=False`: replies are bytes (what is stored is sent on as it is).

    The pool blocks: past `POOL_SIZE` commands in flight, the next waits for a connection
    (up to `POOL_WAIT`). redis-py's default pool instead fails at once past 100, which a
    storm of handshakes or joins (several commands each) would turn into refusals."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        password=password,  # REDIS_PASSWORD; one in the URL is the same (settings check)
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        decode_responses=decode,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it

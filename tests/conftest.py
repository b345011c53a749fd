"""Fixtures shared by the whole suite: a private Redis and the auth service on it."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from redis.asyncio.cluster import RedisCluster

from auth_service.app import create_app
from auth_service.settings import AuthSettings, load_settings
from chaos.local_cluster import LocalCluster
from common.redis import RedisClient, connect_to
from tests.redis_server import RedisServer
from tests.servers import HardenedTestServer

CHAT_CLIENT = ("chat", "chat-secret-for-tests-only")
OTHER_CLIENT = ("reports", "reports-secret-for-tests")
PASSWORD = "correct horse battery"

AuthClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """The suite's own redis-server on a free port; None when REDIS_URL names another."""
    if os.environ.get("REDIS_URL"):
        yield None
        return
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer | None) -> str:
    """A clean database for each test."""
    url = redis_server.url if redis_server is not None else os.environ["REDIS_URL"]
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


def auth_environ(redis_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "AUTH_CLIENTS": ",".join(f"{i}:{s}" for i, s in (CHAT_CLIENT, OTHER_CLIENT)),
        "AUTH_ISSUER": "http://auth.test",
        # Cheap hashing keeps the suite fast; production defaults are tested in settings.
        "AUTH_ARGON2_TIME_COST": "1",
        "AUTH_ARGON2_MEMORY_KIB": "1024",
        "AUTH_ARGON2_PARALLELISM": "1",
        "AUTH_REGISTER_MAX_PER_ADDRESS": "1000",
        "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000",
        "AUTH_LOGIN_MAX_ATTEMPTS": "1000",
        "AUTH_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "100000",
    }
    env.update(overrides)
    return env


@dataclass(frozen=True)
class Store:
    """Where a test's services keep their data: the suite's Redis, or its Redis Cluster."""

    url: str  # one Redis; on the cluster, a node (classic pub/sub reaches every node)
    cluster_nodes: tuple[tuple[str, int], ...] = ()

    def environ(self) -> dict[str, str]:
        if not self.cluster_nodes:
            return {}
        return {"REDIS_CLUSTER_NODES": ",".join(f"{h}:{p}" for h, p in self.cluster_nodes)}

    def client(self) -> RedisClient:
        """A client to look at what the services stored (decoded strings)."""
        return connect_to(self.url, self.cluster_nodes)

    async def subscribers(self, channel: str) -> int:
        """Subscribers of a room's `channel`: classic ones on one Redis; on the cluster,
        sharded ones on the primary that owns its slot (`PUBSUB SHARDNUMSUB`)."""
        client = self.client()
        try:
            if isinstance(client, RedisCluster):
                await client.initialize()
                node = client.get_node_from_key(channel)
                reply = await client.execute_command(
                    "PUBSUB SHARDNUMSUB", channel, target_nodes=node
                )
            else:
                reply = await client.execute_command("PUBSUB NUMSUB", channel)
        finally:
            await client.aclose()
        return _numsub(reply, channel)


def _numsub(reply: Any, channel: str) -> int:
    """A NUMSUB reply, flat ([channel, n]) or as redis-py parsed it ([(channel, n)])."""
    if isinstance(reply, dict):  # a cluster client's answer, by node
        (reply,) = reply.values()
    flat = [item for pair in reply for item in (pair if isinstance(pair, tuple) else (pair,))]
    answers = dict(zip(flat[::2], flat[1::2], strict=True))
    return int(answers[channel])


@pytest.fixture(params=["redis", "cluster"])
def store(request: pytest.FixtureRequest, redis_url: str) -> Store:
    """The auth service's integration tests run on one Redis and on a Redis Cluster."""
    if request.param == "redis":
        return Store(redis_url)
    nodes = request.getfixturevalue("cluster_nodes")
    return Store(f"redis://127.0.0.1:{nodes[0][1]}/0", nodes)


@pytest.fixture
def auth_settings(redis_url: str, store: Store) -> AuthSettings:
    return load_settings(auth_environ(redis_url, **store.environ()))


@pytest.fixture
def make_auth_client(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], redis_url: str, store: Store
) -> AuthClientFactory:
    """Starts another auth service instance on the test's store, with optional overrides."""

    async def make(**overrides: str) -> TestClient[Any, Any]:
        environ = auth_environ(redis_url, **{**store.environ(), **overrides})
        settings = load_settings(environ)
        return await aiohttp_client(HardenedTestServer(create_app(settings), settings.http))

    return make


@pytest.fixture
async def auth(make_auth_client: AuthClientFactory) -> TestClient[Any, Any]:
    return await make_auth_client()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """The suite's own Redis Cluster (3 primaries, 3 replicas), started by the first test
    that asks for it (about 2 s)."""
    cluster = LocalCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_nodes(redis_cluster: LocalCluster) -> tuple[tuple[str, int], ...]:
    """The cluster's seeds, every primary flushed for each test."""
    redis_cluster.flush()
    return tuple(("127.0.0.1", node.port) for node in redis_cluster.nodes[:3])

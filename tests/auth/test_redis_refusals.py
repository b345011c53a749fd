"""A Redis that answers but refuses writes (a replica after failover, or at maxmemory) is a 503,
like one that does not answer."""

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from tests.auth.helpers import Client
from tests.conftest import PASSWORD, Store
from tests.redis_server import free_port

Refusal = Callable[[aioredis.Redis], Awaitable[object]]


async def _out_of_memory(client: aioredis.Redis) -> object:
    return await client.config_set("maxmemory", 1)


async def _read_only(client: aioredis.Redis) -> object:
    # A master nobody listens on: the server turns replica and refuses writes with READONLY.
    return await client.replicaof("127.0.0.1", free_port())


async def _restore(client: aioredis.Redis) -> None:
    await client.replicaof("NO", "ONE")
    await client.config_set("maxmemory", 0)


@pytest.fixture
def store(redis_url: str) -> Store:
    """These are one Redis's refusals (maxmemory, turned replica); a cluster's failover has
    its own tests."""
    return Store(redis_url)


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await _restore(client)
        await client.aclose()


@pytest.mark.parametrize("refuse", [_out_of_memory, _read_only], ids=["oom", "readonly"])
async def test_refused_writes_are_503(
    auth: Client, admin: aioredis.Redis, refuse: Refusal, caplog: pytest.LogCaptureFixture
) -> None:
    await refuse(admin)
    response = await auth.post("/users", json={"username": "alice", "password": PASSWORD})
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"] == "temporarily_unavailable"
    assert "unhandled error" not in caplog.text

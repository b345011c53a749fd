"""The key ring's periodic re-read: concurrent requests share one, and a failed one keeps the
keys already held."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from auth_service import keys
from auth_service.keys import KeyRing
from common.redis import connect
from tests.faults import LinkProxy


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[LinkProxy]:
    proxy = LinkProxy(urlsplit(redis_url).port or 6379)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def client(link: LinkProxy) -> AsyncIterator[aioredis.Redis]:
    redis = connect(link.url, timeout=0.5)
    yield redis
    link.thaw()
    await redis.aclose()


def count_key_reads(redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HGETALL the ring sends from now on (one per re-read); every read is stale."""
    reads: list[str] = []
    hgetall = redis.hgetall

    async def counting(name: str) -> Any:
        reads.append(name)
        return await hgetall(name)

    monkeypatch.setattr(redis, "hgetall", counting)
    monkeypatch.setattr(keys, "REFRESH_SECONDS", -1.0)
    return reads


async def test_concurrent_requests_share_one_reload(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = KeyRing(client)
    await ring.load()
    reads = count_key_reads(client, monkeypatch)
    signing = await asyncio.gather(*(ring.signing_key() for _ in range(20)))
    assert reads == [keys.KEYS_HASH]
    assert len({key.kid for key in signing}) == 1


async def test_a_silent_redis_costs_one_wait_and_the_held_keys_stay(
    client: aioredis.Redis, link: LinkProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = KeyRing(client)
    await ring.load()
    held = await ring.signing_key()
    reads = count_key_reads(client, monkeypatch)
    link.freeze()
    signing = await asyncio.gather(*(ring.signing_key() for _ in range(20)))
    assert reads == [keys.KEYS_HASH]
    assert {key.kid for key in signing} == {held.kid}

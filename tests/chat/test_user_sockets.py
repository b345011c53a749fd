"""The per-user socket count's batching: admissions asked together share a pipeline yet each
gets its own answer; nothing fails open; releases are never lost while Redis is away."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ResponseError

from common.redis import RedisClient, connect
from service.broker.base import UNAVAILABLE
from service.instances import InstanceLease, record_key
from service.user_sockets import USERS, UserSockets, sockets_key
from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import Stack
from tests.chat.helpers import connect as ws_connect
from tests.conftest import Store
from tests.faults import LinkProxy

CAP = 2


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def redis(store: Store) -> AsyncIterator[RedisClient]:
    client = store.client()
    yield client
    await client.aclose()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[LinkProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    link = LinkProxy(port)
    await link.start()
    yield link
    link.restore()
    await link.close()


class FirstWarning(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.set()


async def counts(redis: RedisClient, user: str) -> dict[Any, Any]:
    return dict(await redis.hgetall(sockets_key(user)))  # type: ignore[misc]


async def test_admissions_asked_together_answer_each_caller_in_order(
    redis: RedisClient, store: Store
) -> None:
    instance, alice, bob = fresh("inst"), fresh("alice"), fresh("bob")
    sockets = UserSockets(redis, InstanceLease(redis, instance, lease=5.0), CAP)
    answers = await asyncio.gather(*(sockets.admit(u) for u in (alice, bob, alice, alice)))
    assert answers == [True, True, True, False]  # alice's third is over the cap of 2
    assert await counts(redis, alice) == {instance: "2"}
    assert await counts(redis, bob) == {instance: "1"}
    recorded = await redis.smembers(record_key(instance, USERS))  # type: ignore[misc]
    assert recorded == {alice, bob}  # recorded before the counts, for a reaper to find


async def test_a_batch_records_its_new_users_in_one_command(redis_url: str) -> None:
    redis = connect(redis_url)
    try:
        sockets = UserSockets(redis, InstanceLease(redis, fresh("inst"), lease=5.0), CAP)
        before = await _calls(redis, "sadd")
        users = [fresh("user") for _ in range(5)]
        assert await asyncio.gather(*(sockets.admit(u) for u in users)) == [True] * 5
        assert await _calls(redis, "sadd") == before + 1
        assert await sockets.admit(users[0]) is True  # already recorded: no SADD at all
        assert await _calls(redis, "sadd") == before + 1
    finally:
        await redis.aclose()


async def _calls(redis: RedisClient, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_an_error_in_a_batch_is_its_own_callers_alone(
    redis: RedisClient, store: Store
) -> None:
    broken, fine = fresh("broken"), fresh("fine")
    await redis.set(sockets_key(broken), "not a hash")
    sockets = UserSockets(redis, InstanceLease(redis, fresh("inst"), lease=5.0), CAP)
    answers = await asyncio.gather(
        sockets.admit(broken), sockets.admit(fine), return_exceptions=True
    )
    assert isinstance(answers[0], ResponseError)
    assert answers[1] is True


async def test_a_batch_that_cannot_reach_redis_refuses_every_caller(
    proxy: LinkProxy, redis_url: str
) -> None:
    redis = connect(proxy.url, timeout=1.0)
    users = [fresh("user") for _ in range(3)]
    try:
        sockets = UserSockets(redis, InstanceLease(redis, fresh("inst"), lease=5.0), CAP)
        proxy.cut()
        answers = await asyncio.gather(*(sockets.admit(u) for u in users), return_exceptions=True)
        assert all(isinstance(a, UNAVAILABLE) for a in answers), answers
    finally:
        await redis.aclose()
    direct = connect(redis_url)
    try:
        for user in users:  # and nothing was counted for them
            assert await counts(direct, user) == {}
    finally:
        await direct.aclose()


async def test_releases_while_redis_is_away_are_sent_once_it_is_back(
    proxy: LinkProxy, redis_url: str
) -> None:
    redis = connect(proxy.url, timeout=1.0)
    direct = connect(redis_url)
    alice, bob = fresh("alice"), fresh("bob")
    try:
        sockets = UserSockets(redis, InstanceLease(redis, fresh("inst"), lease=5.0), CAP)
        for user in (alice, alice, bob):
            assert await sockets.admit(user) is True
        proxy.cut()
        failed = FirstWarning()
        logger = logging.getLogger("service.user_sockets")
        logger.addHandler(failed)
        try:
            for user in (alice, bob, alice):
                sockets.release(user)
            async with asyncio.timeout(10):
                await failed.seen.wait()  # a batch was tried and failed
        finally:
            logger.removeHandler(failed)
        assert sockets.unreleased == 3
        assert await counts(direct, alice) != {}  # not taken yet
        proxy.restore()
        async with asyncio.timeout(15):
            await sockets.released()
        assert sockets.unreleased == 0
        assert await counts(direct, alice) == {}
        assert await counts(direct, bob) == {}
    finally:
        await redis.aclose()
        await direct.aclose()


@pytest.mark.parametrize("store", ["redis"], indirect=True)  # its link to one Redis, cut
async def test_a_handshake_redis_cannot_count_is_refused_503(
    make_chat: ChatFactory, stack: Stack, proxy: LinkProxy
) -> None:
    alice = await stack.user("alice", "alice password")
    chat = await make_chat(REDIS_URL=proxy.url)
    ws = await ws_connect(chat, alice.access_token)  # its credential is cached now
    await ws.close()
    await chat.app[NODE].stores.user_sockets.released()
    proxy.cut()
    response = await chat.get("/ws", headers=_upgrade(alice.access_token))
    assert response.status == 503
    assert "cannot admit connections now" in await response.text()


def _upgrade(token: str) -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Authorization": f"Bearer {token}",
    }

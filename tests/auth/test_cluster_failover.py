"""The auth service on a Redis Cluster while a primary fails over: requests whose keys live on
the other shards keep working throughout; those whose keys lived on the failed one get 503
(never a 500, never a wrong answer) and work again once its replica took over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from auth_service.app import create_app
from auth_service.keys import KEYS_HASH
from auth_service.refresh import family_key
from auth_service.revocation import jti_key
from auth_service.settings import load_settings
from auth_service.users import UserStore
from chaos.local_cluster import LocalCluster, Node
from tests.auth.helpers import CHAT_AUTH, password_grant, register
from tests.conftest import PASSWORD, auth_environ
from tests.servers import HardenedTestServer

RECOVERY_BOUND = 10.0  # seconds until the failed shard's keys are served again


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of its own: this test kills one of its primaries."""
    cluster = LocalCluster()
    cluster.start()
    yield cluster
    cluster.stop()


def _keys_of(token: str) -> list[str]:
    """The keys introspecting this access token reads."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return [
        jti_key(claims["jti"]),
        family_key(claims["sid"]),
        UserStore.key(claims["sub"]),
        KEYS_HASH,
    ]


async def _active(auth: TestClient[Any, Any], token: str) -> int | bool:
    """True/False for an answer, or the HTTP status when there was none."""
    response = await auth.post("/introspect", data={"token": token}, headers=CHAT_AUTH)
    if response.status != 200:
        return response.status
    return bool((await response.json())["active"])


async def test_auth_keeps_working_through_a_primary_failover(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    redis_url: str,
    own_cluster: LocalCluster,
) -> None:
    seeds = ",".join(f"127.0.0.1:{node.port}" for node in own_cluster.nodes[:3])
    settings = load_settings(auth_environ(redis_url, REDIS_CLUSTER_NODES=seeds))
    auth = await aiohttp_client(HardenedTestServer(create_app(settings), settings.http))
    tokens = []
    for n in range(12):
        await register(auth, f"user{n:02d}")
        tokens.append((await password_grant(auth, f"user{n:02d}"))["access_token"])
    keys_node = own_cluster.primary_of(KEYS_HASH)
    homes = {
        token: {own_cluster.primary_of(key).port for key in _keys_of(token)} for token in tokens
    }
    victim: Node = next(
        node
        for node in own_cluster.nodes
        if node is not keys_node
        and node.port in set().union(*homes.values())
        and any(node.port not in ports for ports in homes.values())
    )
    spared = [t for t in tokens if victim.port not in homes[t]]
    struck = [t for t in tokens if victim.port in homes[t]]
    assert spared
    assert struck

    # What it wrote is on its replica: this test is about answers, not Redis's asynchronous
    # replication (a token issued just before a crash may be lost: docs/reliability.md).
    own_cluster.wait_replicated(victim)
    own_cluster.kill(victim)
    killed = time.monotonic()
    recovered_at = None
    while time.monotonic() - killed < RECOVERY_BOUND:
        for token in spared:  # every answer right, at every moment
            assert await _active(auth, token) is True
        answers = [await _active(auth, token) for token in struck]
        assert set(answers) <= {True, 503}, answers  # unavailable, never wrong or a 500
        if all(answer is True for answer in answers):
            recovered_at = time.monotonic() - killed
            break
        await asyncio.sleep(0.1)  # the next round of requests, while the replica takes over
    assert recovered_at is not None, f"not served again within {RECOVERY_BOUND} s"


async def test_a_moved_storm_is_a_503_not_a_traceback(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    redis_url: str,
    own_cluster: LocalCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A slot left MIGRATING to a node that is not importing it: its owner answers ASK, the
    other MOVED back, and the client gives up ("TTL exhausted"). The request whose key is in
    that slot gets 503 like any Redis refusal; nothing else is touched."""
    settings = load_settings(auth_environ(redis_url, REDIS_CLUSTER_NODES=own_cluster.seeds))
    auth = await aiohttp_client(HardenedTestServer(create_app(settings), settings.http))
    owner = own_cluster.primary_of("auth:username:carol")
    other = next(node for node in own_cluster.primaries() if node is not owner)
    slot = int(owner.client().execute_command("CLUSTER KEYSLOT", "auth:username:carol"))
    other_id = other.client().execute_command("CLUSTER MYID")
    owner.client().execute_command("CLUSTER SETSLOT", slot, "MIGRATING", other_id)
    response = await auth.post("/users", json={"username": "carol", "password": PASSWORD})
    assert response.status == 503
    assert (await response.json())["error"] == "temporarily_unavailable"
    assert "unhandled error" not in caplog.text
    owner.client().execute_command("CLUSTER SETSLOT", slot, "STABLE")
    response = await auth.post("/users", json={"username": "carol", "password": PASSWORD})
    assert response.status == 201

"""REDIS_PASSWORD: both services on a Redis, and on a Redis Cluster, that demands a password
(docker-compose.yml runs its Redis so: it holds the signing keys)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from auth_service.app import create_app as create_auth_app
from auth_service.settings import load_settings as load_auth_settings
from chaos.local_cluster import LocalCluster
from common.config import ConfigError
from service.app import create_app as create_chat_app
from service.settings import load_settings as load_chat_settings
from tests.chat.conftest import chat_environ
from tests.chat.helpers import receive, receive_type
from tests.conftest import PASSWORD, auth_environ
from tests.redis_server import RedisServer
from tests.servers import HardenedTestServer

REDIS_PASSWORD = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[RedisServer]:
    server = RedisServer(password=REDIS_PASSWORD)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def locked_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster(password=REDIS_PASSWORD)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["redis", "cluster"])
def locked_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that puts a service on the password-protected store (no password)."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("locked_redis")
        return {"REDIS_URL": server.url}
    cluster: LocalCluster = request.getfixturevalue("locked_cluster")
    return {"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_CLUSTER_NODES": cluster.seeds}


async def started(app: Any, limits: Any) -> HardenedTestServer:
    server = HardenedTestServer(app, limits)
    await server.start_server()
    return server


@pytest.fixture
async def servers(
    locked_store: dict[str, str],
) -> AsyncIterator[tuple[HardenedTestServer, HardenedTestServer]]:
    """The auth service and a chat instance told the password."""
    environ = {**locked_store, "REDIS_PASSWORD": REDIS_PASSWORD}
    auth_settings = load_auth_settings(auth_environ(locked_store["REDIS_URL"], **environ))
    auth = await started(create_auth_app(auth_settings), auth_settings.http)
    auth_url = str(auth.make_url("")).rstrip("/")
    chat_settings = load_chat_settings(chat_environ(locked_store["REDIS_URL"], auth_url, **environ))
    chat = await started(create_chat_app(chat_settings), chat_settings.http)
    yield auth, chat
    await chat.close()
    await auth.close()


async def test_both_services_work_on_a_store_that_demands_a_password(
    servers: tuple[HardenedTestServer, HardenedTestServer],
) -> None:
    auth, chat = servers
    username = f"u{secrets.token_hex(4)}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            auth.make_url("/users"), json={"username": username, "password": PASSWORD}
        ) as r:
            assert r.status == 201, await r.text()
        async with session.post(
            auth.make_url("/token"),
            data={"grant_type": "password", "username": username, "password": PASSWORD},
        ) as r:
            assert r.status == 200, await r.text()
            token = (await r.json())["access_token"]
        for server in (auth, chat):
            async with session.get(server.make_url("/readyz")) as r:
                assert r.status == 200, await r.text()
        async with session.ws_connect(
            chat.make_url("/ws"), headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            assert (await receive(ws))["type"] == "hello"
            await ws.send_json({"op": "join", "room": "locked"})
            await receive_type(ws, "joined")
            await ws.send_json({"op": "send", "room": "locked", "text": "through a lock"})
            message = await receive_type(ws, "message")
            assert message["text"] == "through a lock"
            assert message["offset"] == 1  # the history append went through too


async def test_without_the_password_the_service_is_not_ready(
    locked_store: dict[str, str],
) -> None:
    settings = load_auth_settings(auth_environ(locked_store["REDIS_URL"], **locked_store))
    auth = await started(create_auth_app(settings), settings.http)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(auth.make_url("/readyz")) as r,
        ):
            assert r.status == 503
    finally:
        await auth.close()


@pytest.mark.parametrize("load", [load_auth_settings, load_chat_settings])
def test_a_password_in_the_url_must_be_the_same_one(load: Any) -> None:
    base = {**auth_environ("redis://:one@127.0.0.1:6379/0"), "REDIS_PASSWORD": "two"}
    with pytest.raises(ConfigError, match="REDIS_PASSWORD"):
        load(base)
    assert load({**base, "REDIS_PASSWORD": "one"}).redis_password == "one"
    plain = auth_environ("redis://127.0.0.1:6379/0")
    assert load(plain).redis_password is None
    told = load({**plain, "REDIS_PASSWORD": REDIS_PASSWORD})
    assert told.redis_password == REDIS_PASSWORD
    assert REDIS_PASSWORD not in repr(told)  # settings may be logged; the password is not

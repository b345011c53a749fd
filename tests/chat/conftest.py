"""Chat fixtures: the real auth service and chat instances on the suite's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from auth_service.app import create_app as create_auth_app
from auth_service.settings import load_settings as load_auth_settings
from service.app import create_app as create_chat_app
from service.settings import load_settings as load_chat_settings
from tests.chat.helpers import ChatUser, Stack
from tests.conftest import CHAT_CLIENT, PASSWORD, Store, auth_environ
from tests.servers import HardenedTestServer

ChatFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ORIGIN = "https://chat.example"


def chat_environ(redis_url: str, auth_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "AUTH_URL": auth_url,
        "CHAT_CLIENT_ID": CHAT_CLIENT[0],
        "CHAT_CLIENT_SECRET": CHAT_CLIENT[1],
        "CHAT_ALLOWED_ORIGINS": ORIGIN,
        "CHAT_CLOSE_TIMEOUT": "1",
        # Short, so that an instance's shutdown (which waits out the grace) is quick; the
        # grace's own tests set theirs.
        "CHAT_PRESENCE_GRACE": "0.2",
    }
    env.update(overrides)
    return env


@pytest.fixture
async def auth_server(redis_url: str, store: Store) -> AsyncIterator[HardenedTestServer]:
    settings = load_auth_settings(auth_environ(redis_url, **store.environ()))
    server = HardenedTestServer(create_auth_app(settings), settings.http)
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def make_chat(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    redis_url: str,
    store: Store,
    auth_server: TestServer,
) -> ChatFactory:
    """Starts a chat instance (on the test's store: one Redis, or the cluster); keyword
    arguments override its environment."""

    async def make(**overrides: str) -> TestClient[Any, Any]:
        auth_url = str(auth_server.make_url("")).rstrip("/")
        environ = chat_environ(redis_url, auth_url, **store.environ())
        environ.update(overrides)
        settings = load_chat_settings(environ)
        return await aiohttp_client(HardenedTestServer(create_chat_app(settings), settings.http))

    return make


@pytest.fixture(params=["auth", "chat"])
def make_either(
    request: pytest.FixtureRequest, make_auth_client: ChatFactory, make_chat: ChatFactory
) -> ChatFactory:
    """Starts the auth service, or a chat instance: a test using this runs once for each.
    Keyword arguments are settings without their service prefix (`HEADER_TIMEOUT="1"`)."""
    prefix, make = ("AUTH", make_auth_client) if request.param == "auth" else ("CHAT", make_chat)

    async def start(**settings: str) -> TestClient[Any, Any]:
        return await make(**{f"{prefix}_{name}": value for name, value in settings.items()})

    return start


@pytest.fixture
async def stack(make_chat: ChatFactory, auth_server: TestServer) -> AsyncIterator[Stack]:
    """The auth service and two chat instances, A and B, sharing one Redis."""
    session = aiohttp.ClientSession(base_url=auth_server.make_url(""))
    result = Stack(auth=session, a=await make_chat(), b=await make_chat(), auth_server=auth_server)
    yield result
    await session.close()


@pytest.fixture
async def alice(stack: Stack) -> ChatUser:
    return await stack.user("alice", PASSWORD)


@pytest.fixture
async def bob(stack: Stack) -> ChatUser:
    return await stack.user("bob", PASSWORD)

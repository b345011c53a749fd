"""Revocations racing a handshake, a logout, a reconnect or a password change: each window a
review found, closed. The auth service records a revocation before announcing it; these tests
hold each step at the worst moment and check the revoked credential gets no socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from auth_service.components import COMPONENTS
from service.broker.redis import RedisBroker
from service.node import ChatNode
from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Stack, closed_with, connect
from tests.conftest import PASSWORD, Store
from tests.faults import LinkProxy
from tests.redis_server import RedisServer


def events_seen(node: ChatNode) -> asyncio.Queue[str]:
    """A queue that receives each revocation event once the node has acted on it."""
    seen: asyncio.Queue[str] = asyncio.Queue()
    original = node.event

    def event(channel: str, payload: str) -> None:
        original(channel, payload)
        seen.put_nowait(payload)

    node.event = event  # type: ignore[method-assign]
    return seen


async def handshake_status(client: Any, token: str) -> int:
    try:
        ws = await client.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status
    await ws.close()
    return 101


async def test_an_answer_in_flight_during_its_revocation_is_not_believed(
    stack: Stack, alice: ChatUser
) -> None:
    introspector = stack.auth_server.app[COMPONENTS].introspector
    original = introspector.introspect
    answered, release = asyncio.Event(), asyncio.Event()

    async def held(token: str) -> dict[str, Any]:
        answer = await original(token)  # "active": computed before the revocation
        answered.set()
        await release.wait()
        return answer

    introspector.introspect = held  # type: ignore[method-assign]
    seen = events_seen(stack.b.app[NODE])
    handshake = asyncio.create_task(handshake_status(stack.b, alice.access_token))
    await asyncio.wait_for(answered.wait(), 5)
    introspector.introspect = original  # type: ignore[method-assign]  # later asks are live
    async with stack.auth.post("/revoke", data={"token": alice.access_token}) as response:
        assert response.status == 200
    await asyncio.wait_for(seen.get(), 5)  # B has processed the revocation...
    release.set()  # ...and only now receives the stale "active" answer
    assert await handshake == 401
    # Nor was the stale answer cached for the next handshake.
    assert await handshake_status(stack.b, alice.access_token) == 401


async def test_a_revocation_during_the_upgrade_still_closes_the_socket(
    stack: Stack, alice: ChatUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = events_seen(stack.b.app[NODE])
    original = web.WebSocketResponse.prepare

    async def prepare(self: web.WebSocketResponse, request: web.BaseRequest) -> Any:
        # Authenticated, not yet in the hub: the revocation lands exactly here.
        async with stack.auth.post("/revoke", data={"token": alice.access_token}) as response:
            assert response.status == 200
        await asyncio.wait_for(seen.get(), 5)
        return await original(self, request)

    monkeypatch.setattr(web.WebSocketResponse, "prepare", prepare)
    ws = await stack.b.ws_connect("/ws", headers={"Authorization": f"Bearer {alice.access_token}"})
    monkeypatch.setattr(web.WebSocketResponse, "prepare", original)
    assert await closed_with(ws, 2) == 4003


async def test_logout_deletes_the_session_before_announcing_it(
    stack: Stack, alice: ChatUser
) -> None:
    parts = stack.auth_server.app[COMPONENTS]
    cookie = await stack.session_cookie("alice", PASSWORD)
    alive_when_announced: list[bool] = []
    original = parts.revocations.announce

    async def announce(kind: str, value: str, reason: str) -> None:
        alive_when_announced.append(await parts.sessions.lookup(cookie) is not None)
        await original(kind, value, reason)

    parts.revocations.announce = announce  # type: ignore[method-assign]
    async with stack.auth.post(
        "/logout", json={}, headers={"Cookie": f"chat_session={cookie}"}
    ) as r:
        assert r.status == 204
    assert alive_when_announced == [False]


@pytest.fixture
async def cut_off_chat(
    make_chat: ChatFactory,
    redis_server: RedisServer | None,
    auth_server: TestServer,
    store: Store,
) -> AsyncIterator[tuple[Any, LinkProxy, LinkProxy]]:
    """A chat instance whose links to Redis and to the auth service can each be cut."""
    if store.cluster_nodes:
        pytest.skip("one Redis's link cut; on a cluster: test_cluster_faults")
    if redis_server is None:
        pytest.skip("needs the suite's own redis-server")
    assert isinstance(auth_server.port, int)
    redis_link, auth_link = LinkProxy(redis_server.port), LinkProxy(auth_server.port)
    for link in (redis_link, auth_link):
        await link.start()
    chat = await make_chat(REDIS_URL=redis_link.url, AUTH_URL=f"http://127.0.0.1:{auth_link.port}")
    yield chat, redis_link, auth_link
    for link in (redis_link, auth_link):
        await link.close()


async def test_revalidation_retries_until_the_auth_service_answers(
    cut_off_chat: tuple[Any, LinkProxy, LinkProxy], stack: Stack, alice: ChatUser
) -> None:
    chat, redis_link, auth_link = cut_off_chat
    ws = await connect(chat, alice.access_token)
    node: ChatNode = chat.app[NODE]
    broker = node.broker
    assert isinstance(broker, RedisBroker)
    failed_once = asyncio.Event()
    original = node.checker.identity

    async def identity(credential: str, *, token_type: str) -> Any:
        try:
            return await original(credential, token_type=token_type)
        except Exception:
            failed_once.set()
            raise

    node.checker.identity = identity  # type: ignore[method-assign]
    reconnects = broker.reconnects
    redis_link.cut()
    async with stack.auth.post("/revoke", data={"token": alice.access_token}) as response:
        assert response.status == 200  # announced while this instance cannot hear it
    auth_link.cut()  # and when its link returns, the auth service is unreachable
    redis_link.restore()
    async with asyncio.timeout(5):
        await broker.wait_for(lambda: broker.reconnects == reconnects + 1)
    await asyncio.wait_for(failed_once.wait(), 5)  # the first re-validation could not answer
    auth_link.restore()
    assert await closed_with(ws, 5) == 4003  # a later attempt did


async def test_a_password_grant_racing_a_password_change_is_undone(
    stack: Stack, alice: ChatUser
) -> None:
    parts = stack.auth_server.app[COMPONENTS]
    original = parts.refresh.start_family

    async def start_family(**kwargs: str) -> tuple[str, str]:
        token, family = await original(**kwargs)
        # The password changes after this grant's password check, before it completes.
        await parts.users.set_password_hash(alice.id, await parts.passwords.hash("changed pw!"))
        return token, family

    parts.refresh.start_family = start_family  # type: ignore[method-assign]
    async with stack.auth.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_grant"
    parts.refresh.start_family = original  # type: ignore[method-assign]

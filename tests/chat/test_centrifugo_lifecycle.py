"""The Centrifugo SDK (centrifuge-python) across a connection's life: recovery after a dropped
connection, token refresh before expiry, an expired or revoked credential's codes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from centrifuge import Client

from tests.chat.centrifugo_sdk import Events, address, connected, next_of, sdk_client, subscribed
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Stack
from tests.conftest import PASSWORD, AuthClientFactory, Store
from tests.faults import LinkProxy


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis_url)


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        await client.disconnect()


@pytest.fixture
async def short_lived(make_auth_client: AuthClientFactory) -> TestClient[Any, Any]:
    """An auth instance (same Redis, same keys) issuing access tokens that live 4 s."""
    return await make_auth_client(AUTH_ACCESS_TOKEN_TTL="4", AUTH_LEEWAY="0")


def drops(events: Events) -> list[int]:
    """The codes of every time the client went back to connecting (0: its first connect)."""
    codes = []
    while not events.connecting.empty():
        codes.append(events.connecting.get_nowait().code)
    return [code for code in codes if code != 0]


async def password_token(auth: TestClient[Any, Any], username: str) -> str:
    async with auth.post(
        "/token", data={"grant_type": "password", "username": username, "password": PASSWORD}
    ) as response:
        assert response.status == 200
        return str((await response.json())["access_token"])


async def test_messages_sent_while_dropped_arrive_by_recovery(
    stack: Stack, alice: ChatUser, bob: ChatUser, clients: list[Client]
) -> None:
    way_in = LinkProxy(stack.a.server.port)
    await way_in.start()
    url = f"ws://127.0.0.1:{way_in.port}/connection/websocket"
    a, _ = await connected(url, alice.access_token, max_reconnect_delay=0.5)
    b, _ = await connected(address(stack.b), bob.access_token)
    clients += [a, b]
    _, events_a = await subscribed(a, "lobby")
    assert (await next_of(events_a.subscribed)).positioned
    sub_b, _ = await subscribed(b, "lobby")
    await sub_b.publish({"text": "before"})
    assert (await next_of(events_a.publications)).pub.offset == 1

    way_in.cut()  # the connection drops; no new one gets through until restored
    await next_of(events_a.subscribing)
    for text in ("while away 1", "while away 2"):
        await sub_b.publish({"text": text})
    way_in.restore()

    again = await next_of(events_a.subscribed, deadline=10)
    assert again.was_recovering
    assert again.recovered
    recovered = [await next_of(events_a.publications) for _ in range(2)]
    assert [p.pub.data["text"] for p in recovered] == ["while away 1", "while away 2"]
    assert [p.pub.offset for p in recovered] == [2, 3]
    await sub_b.publish({"text": "after"})
    assert (await next_of(events_a.publications)).pub.offset == 4  # live again, no duplicate
    await way_in.close()


async def test_a_recovery_past_what_history_keeps_is_not_recovered(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser, clients: list[Client]
) -> None:
    small = await make_chat(CHAT_NAMESPACES='{"": {"history_size": 2}}')
    other = await make_chat(CHAT_NAMESPACES='{"": {"history_size": 2}}')
    way_in = LinkProxy(small.server.port)
    await way_in.start()
    url = f"ws://127.0.0.1:{way_in.port}/connection/websocket"
    a, _ = await connected(url, alice.access_token, max_reconnect_delay=0.5)
    b, _ = await connected(address(other), bob.access_token)
    clients += [a, b]
    _, events_a = await subscribed(a, "lobby")
    await next_of(events_a.subscribed)
    sub_b, _ = await subscribed(b, "lobby")

    way_in.cut()
    await next_of(events_a.subscribing)
    for n in range(4):  # history keeps the last 2: offsets 1 and 2 are lost to `a`
        await sub_b.publish({"text": f"m{n}"})
    way_in.restore()

    again = await next_of(events_a.subscribed, deadline=10)
    assert again.was_recovering
    assert not again.recovered
    assert again.stream_position is not None
    assert again.stream_position.offset == 4  # the SDK goes on from the top
    await sub_b.publish({"text": "live"})
    assert (await next_of(events_a.publications)).pub.data["text"] == "live"
    await way_in.close()


async def test_the_token_is_refreshed_before_it_expires(
    make_chat: ChatFactory,
    alice: ChatUser,
    short_lived: TestClient[Any, Any],
    clients: list[Client],
) -> None:
    chat = await make_chat(CHAT_EXPIRY_GRACE="0")
    fetched: asyncio.Queue[float] = asyncio.Queue()

    async def get_token() -> str:
        token = await password_token(short_lived, "alice")
        await fetched.put(time.time())
        return token

    client, events = sdk_client(address(chat), get_token=get_token)
    clients.append(client)
    await client.connect()
    await client.ready(5)
    sub, sub_events = await subscribed(client, "lobby")
    first = await next_of(fetched)
    for _ in range(2):  # past the first token's expiry, and the second's
        assert await next_of(fetched, deadline=6) < first + 4
        first = time.time()
    await sub.publish({"text": "still here"})
    assert (await next_of(sub_events.publications)).pub.data["text"] == "still here"
    assert drops(events) == []  # never dropped
    assert events.disconnected.empty()


async def test_an_expired_connect_token_is_109_and_the_sdk_fetches_another(
    make_chat: ChatFactory,
    alice: ChatUser,
    make_auth_client: AuthClientFactory,
    clients: list[Client],
) -> None:
    one_second = await make_auth_client(AUTH_ACCESS_TOKEN_TTL="1", AUTH_LEEWAY="0")
    chat = await make_chat()
    expired = await password_token(one_second, "alice")
    await asyncio.sleep(2.1)  # the token's own clock: it expires 1 s after issue
    fetched: asyncio.Queue[str] = asyncio.Queue()

    async def get_token() -> str:
        await fetched.put("called")
        return alice.access_token

    client, events = sdk_client(address(chat), token=expired, get_token=get_token)
    clients.append(client)
    await client.connect()
    refused = await next_of(events.errors)
    assert refused.error.code == 109
    await next_of(fetched)
    await client.ready(5)


async def test_a_connection_whose_token_expires_is_closed_with_3005(
    make_chat: ChatFactory,
    alice: ChatUser,
    short_lived: TestClient[Any, Any],
    clients: list[Client],
) -> None:
    chat = await make_chat(CHAT_EXPIRY_GRACE="0")
    token = await password_token(short_lived, "alice")
    client, events = await connected(address(chat), token)
    clients.append(client)
    assert (await next_of(events.connecting)).code == 0  # its first connect
    dropped = await next_of(events.connecting, deadline=8)
    assert (dropped.code, dropped.reason) == (3005, "connection expired")


async def test_a_revoked_token_is_disconnected_for_good_with_3500(
    stack: Stack, alice: ChatUser, clients: list[Client]
) -> None:
    client, events = await connected(address(stack.a), alice.access_token)
    clients.append(client)
    async with stack.auth.post("/revoke", data={"token": alice.access_token}) as response:
        assert response.status == 200
    gone = await next_of(events.disconnected)
    assert (gone.code, gone.reason) == (3500, "invalid token")
    assert drops(events) == []  # terminal: no reconnection


async def test_a_shutdown_is_3001_and_the_sdk_reconnects_elsewhere(
    make_chat: ChatFactory, alice: ChatUser, clients: list[Client]
) -> None:
    chat = await make_chat()
    client, events = await connected(address(chat), alice.access_token)
    clients.append(client)
    assert (await next_of(events.connecting)).code == 0  # its first connect
    await chat.server.close()
    dropped = await next_of(events.connecting)
    assert (dropped.code, dropped.reason) == (3001, "shutdown")  # reconnecting, not stopped
    assert events.disconnected.empty()

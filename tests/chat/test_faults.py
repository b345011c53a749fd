"""Faults: Redis stopped, the subscriber killed or half-open, the auth service down or slow,
a chat instance killed. Each test is a promise of docs/reliability.md."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from service.broker.redis import RedisBroker
from service.views import NODE
from tests.chat.clis import CliFactory, chat_client, ws_url
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Stack, connect, join, receive, receive_type, send
from tests.conftest import Store
from tests.faults import LinkProxy
from tests.redis_server import RedisServer

__all__ = ["chat_client"]  # the fixture, imported for the tests here

RESUBSCRIBE_BOUND = 5.0  # the promise: every instance resubscribes within 5 s of Redis's return


@pytest.fixture
def store(redis_url: str) -> Store:
    """These faults are one Redis's (stopped, its subscriber links killed, its link cut);
    a cluster's (a primary killed, a slot migrated) are in test_cluster_faults."""
    return Store(redis_url)


@pytest.fixture
def own_redis(redis_server: RedisServer | None) -> RedisServer:
    if redis_server is None:
        pytest.skip("needs the suite's own redis-server to stop and start it")
    return redis_server


@asynccontextmanager
async def redis_stopped(server: RedisServer) -> AsyncIterator[None]:
    # stop() and start() block (they wait on and poll the process): keep them off the loop.
    await asyncio.to_thread(server.stop)
    try:
        yield
    finally:
        if server._process is None:  # restarted by the test already
            await asyncio.to_thread(server.start)


def broker_of(client: Any) -> RedisBroker:
    broker = client.app[NODE].broker
    assert isinstance(broker, RedisBroker)
    return broker


async def until(broker: RedisBroker, predicate: Any, deadline: float = 5.0) -> None:
    async with asyncio.timeout(deadline):
        await broker.wait_for(predicate)


async def numsub(redis_url: str, *rooms: str) -> dict[str, int]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        counts = await client.pubsub_numsub(*(f"chat:room:{room}" for room in rooms))
    finally:
        await client.aclose()
    return {channel.removeprefix("chat:room:"): int(n) for channel, n in counts}


async def test_redis_stopped_and_back(
    stack: Stack, alice: ChatUser, bob: ChatUser, own_redis: RedisServer, redis_url: str
) -> None:
    sender = await connect(stack.a, alice.access_token)
    listener = await connect(stack.b, bob.access_token)
    for ws in (sender, listener):
        await join(ws, "lobby")
    await join(sender, "hall")
    await join(listener, "den")
    a, b = broker_of(stack.a), broker_of(stack.b)
    carol_token = (await stack.user("carol", "carol password")).access_token

    async with redis_stopped(own_redis):
        await until(a, lambda: not a.healthy)
        await until(b, lambda: not b.healthy)
        # Both services stay up and say they are not ready.
        assert (await stack.a.get("/healthz")).status == 200
        assert (await stack.a.get("/readyz")).status == 503
        async with stack.auth.get("/readyz") as response:
            assert response.status == 503
        # A send is refused out loud, never a silent success; the socket stays open.
        await sender.send_json({"op": "send", "room": "lobby", "text": "lost?", "ref": 1})
        error = await receive(sender)
        assert error == {
            "type": "error", "code": "unavailable", "message": error["message"], "ref": 1
        }  # fmt: skip
        await sender.send_json({"op": "join", "room": "new-room", "ref": 2})
        assert (await receive(sender))["code"] == "unavailable"
        await listener.send_json({"op": "ping"})
        assert await receive(listener) == {"type": "pong"}
        # Leaving during the outage is honoured when the link returns.
        await listener.send_json({"op": "leave", "room": "den"})
        assert (await receive(listener))["type"] == "left"
        # A credential not yet cached cannot be checked: 503, not a connection.
        response = await stack.a.get("/ws", headers=upgrade(carol_token))
        assert response.status == 503

        await asyncio.to_thread(own_redis.start)
        restarted = time.monotonic()
        await until(a, lambda: a.healthy, RESUBSCRIBE_BOUND)
        await until(b, lambda: b.healthy, RESUBSCRIBE_BOUND)
        assert time.monotonic() - restarted < RESUBSCRIBE_BOUND

    # Nothing could be published meanwhile, and history outlived the restart (AOF): the
    # rooms repair to nothing missing, so no socket gets a gap.
    # Exactly the rooms with local members are subscribed, once per instance.
    assert await numsub(redis_url, "lobby", "hall", "den", "new-room") == {
        "lobby": 2, "hall": 1, "den": 0, "new-room": 0
    }  # fmt: skip
    # Delivery resumes, and the sockets from before the outage are still the ones in use.
    message_id = await send(sender, "lobby", "back again")
    arrived = await receive(listener)  # the very next frame: no gap came first
    assert (arrived["type"], arrived["id"], arrived["offset"]) == ("message", message_id, 1)
    assert (await stack.a.get("/readyz")).status == 200
    await sender.close()
    await listener.close()


async def test_killed_subscriber_connections_recover(
    stack: Stack, alice: ChatUser, bob: ChatUser, redis_url: str
) -> None:
    sender = await connect(stack.a, alice.access_token)
    listener = await connect(stack.b, bob.access_token)
    for ws in (sender, listener):
        await join(ws, "lobby")
    a, b = broker_of(stack.a), broker_of(stack.b)
    before = (a.reconnects, b.reconnects)

    client = aioredis.Redis.from_url(redis_url)
    await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await client.aclose()

    await until(a, lambda: a.reconnects == before[0] + 1 and a.healthy, RESUBSCRIBE_BOUND)
    await until(b, lambda: b.reconnects == before[1] + 1 and b.healthy, RESUBSCRIBE_BOUND)
    assert await numsub(redis_url, "lobby") == {"lobby": 2}
    message_id = await send(sender, "lobby", "after the kill")
    arrived = await receive(listener)
    assert (arrived["type"], arrived["id"]) == ("message", message_id)  # no gap before it
    await sender.close()
    await listener.close()


async def test_the_client_sends_a_line_again_until_redis_takes_it(
    make_chat: ChatFactory,
    stack: Stack,
    alice: ChatUser,
    bob: ChatUser,
    proxied_redis: LinkProxy,
    chat_client: CliFactory,
) -> None:
    """A line sent while the instance cannot reach Redis is refused `unavailable`; chat-client
    says so once and sends it again until it is stored (as through a cluster failover)."""
    chat = await make_chat(REDIS_URL=proxied_redis.url)
    listener = await connect(stack.b, bob.access_token)
    await join(listener, "lobby")
    cli = await chat_client("--url", ws_url(chat), "--room", "lobby", "--token", alice.access_token)
    await cli.expect(r"\* joined #lobby")
    proxied_redis.cut()
    await cli.type("while redis is away")
    await cli.expect(r"! send #lobby refused: unavailable: .* \(sending it again for up to 30 s\)")
    proxied_redis.restore()
    assert (await receive_type(listener, "message"))["text"] == "while redis is away"
    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    assert "refused" not in out  # said once, not at every attempt
    await listener.close()


async def test_messages_missed_while_the_link_was_down_are_repaired_in_place(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser, proxied_redis: LinkProxy
) -> None:
    """Messages published while one instance's Redis link is cut reach its sockets once the
    link is back, read from history, in order, before newer ones: on the same sockets, with
    no gap and nothing twice."""
    chat = await make_chat(REDIS_URL=proxied_redis.url)
    listener = await connect(chat, bob.access_token)
    sender = await connect(stack.a, alice.access_token)
    for ws in (listener, sender):
        await join(ws, "lobby")
    await send(sender, "lobby", "before")
    assert (await receive_type(listener, "message"))["text"] == "before"
    broker = broker_of(chat)
    reconnects = broker.reconnects
    proxied_redis.cut()
    await until(broker, lambda: not broker.healthy)
    for n in range(5):
        await send(sender, "lobby", f"missed {n}")  # published: instance A's link is fine
    proxied_redis.restore()
    await until(broker, lambda: broker.reconnects == reconnects + 1, RESUBSCRIBE_BOUND)
    await send(sender, "lobby", "after")
    frames = [await receive(listener) for _ in range(6)]
    assert [f["type"] for f in frames] == ["message"] * 6
    assert [f["text"] for f in frames] == [f"missed {n}" for n in range(5)] + ["after"]
    assert [f["offset"] for f in frames] == [2, 3, 4, 5, 6, 7]
    await listener.close()
    await sender.close()


async def test_a_room_without_history_says_a_gap_after_the_link_returns(
    make_chat: ChatFactory, alice: ChatUser, redis_url: str
) -> None:
    chat = await make_chat(CHAT_NAMESPACES='{"": {"history_size": 0}}')
    ws = await connect(chat, alice.access_token)
    joined = await join(ws, "lobby")
    assert joined == {"type": "joined", "room": "lobby"}  # no epoch, no offset: no history
    broker = broker_of(chat)
    reconnects = broker.reconnects
    client = aioredis.Redis.from_url(redis_url)
    await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await client.aclose()
    await until(broker, lambda: broker.reconnects == reconnects + 1, RESUBSCRIBE_BOUND)
    assert await receive_type(ws, "gap") == {"type": "gap", "room": "lobby"}
    message_id = await send(ws, "lobby", "at most once")
    received = await receive_type(ws, "message")
    assert received["id"] == message_id
    assert "offset" not in received
    await ws.close()


@pytest.fixture
async def proxied_redis(own_redis: RedisServer) -> AsyncIterator[LinkProxy]:
    proxy = LinkProxy(own_redis.port)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_a_half_open_link_is_detected_by_the_probe(
    make_chat: ChatFactory,
    stack: Stack,
    alice: ChatUser,
    bob: ChatUser,
    proxied_redis: LinkProxy,
    redis_url: str,
) -> None:
    probe = 0.2
    chat = await make_chat(REDIS_URL=proxied_redis.url, CHAT_REDIS_PROBE_INTERVAL=str(probe))
    listener = await connect(chat, bob.access_token)
    sender = await connect(stack.a, alice.access_token)
    for ws in (listener, sender):
        await join(ws, "lobby")
    broker = broker_of(chat)

    frozen_at = time.monotonic()
    proxied_redis.freeze()  # bytes stop flowing; no error, no close
    await until(broker, lambda: not broker.healthy, 10 * probe)
    detected = time.monotonic() - frozen_at
    assert detected <= 4 * probe  # a probe and its missing answer, not "never"
    proxied_redis.thaw()
    await until(broker, lambda: broker.healthy, RESUBSCRIBE_BOUND)
    assert await numsub(redis_url, "lobby") == {"lobby": 2}
    message_id = await send(sender, "lobby", "through the repaired link")
    assert (await receive_type(listener, "message"))["id"] == message_id
    await listener.close()
    await sender.close()


# -- the auth service down or slow ------------------------------------------------------------


@pytest.fixture
async def proxied_auth(auth_server: TestServer) -> AsyncIterator[LinkProxy]:
    port = auth_server.port
    assert isinstance(port, int)
    proxy = LinkProxy(port)
    await proxy.start()
    yield proxy
    await proxy.close()


def upgrade(token: str) -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Authorization": f"Bearer {token}",
    }


async def test_auth_service_down_refuses_new_handshakes_and_spares_live_sockets(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser, proxied_auth: LinkProxy
) -> None:
    chat = await make_chat(AUTH_URL=f"http://127.0.0.1:{proxied_auth.port}")
    live = await connect(chat, alice.access_token)
    await join(live, "lobby")

    proxied_auth.cut()
    response = await chat.get("/ws", headers=upgrade(bob.access_token))
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    # The socket opened before the outage carries on.
    message_id = await send(live, "lobby", "still here")
    assert (await receive_type(live, "message"))["id"] == message_id

    proxied_auth.restore()  # no restart of anything
    ws = await connect(chat, bob.access_token)
    await ws.close()
    await live.close()


async def test_a_slow_auth_service_times_out_and_the_loop_stays_responsive(
    make_chat: ChatFactory, alice: ChatUser, bob: ChatUser, proxied_auth: LinkProxy
) -> None:
    timeout = 0.5
    chat = await make_chat(
        AUTH_URL=f"http://127.0.0.1:{proxied_auth.port}",
        CHAT_INTROSPECTION_TIMEOUT=str(timeout),
        CHAT_RATE_PER_SECOND="100000",  # the pings below come back to back
        CHAT_RATE_BURST="100000",
    )
    live = await connect(chat, alice.access_token)
    proxied_auth.freeze()  # accepts, then never answers
    started = time.monotonic()
    handshake = asyncio.create_task(chat.get("/ws", headers=upgrade(bob.access_token)))
    # While the handshake waits, other sockets are served at once.
    pongs = 0
    while not handshake.done():
        await live.send_json({"op": "ping"})
        assert await receive(live, deadline=0.25) == {"type": "pong"}
        pongs += 1
    response = await handshake
    assert response.status == 503
    assert timeout <= time.monotonic() - started < timeout + 1.0
    assert pongs >= 3
    proxied_auth.thaw()
    await live.close()


async def test_auth_service_with_redis_down_answers_503_never_a_token(
    stack: Stack, alice: ChatUser, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.auth.helpers import CHAT_AUTH
    from tests.conftest import PASSWORD

    caplog.set_level(logging.INFO)
    async with redis_stopped(own_redis):
        calls = [
            ("post", "/users", {"json": {"username": "carol", "password": PASSWORD}}),
            (
                "post",
                "/token",
                {"data": {"grant_type": "password", "username": "alice", "password": PASSWORD}},
            ),
            (
                "post",
                "/token",
                {"data": {"grant_type": "refresh_token", "refresh_token": alice.refresh_token}},
            ),
            ("post", "/introspect", {"data": {"token": alice.access_token}, "headers": CHAT_AUTH}),
            ("post", "/revoke", {"data": {"token": alice.access_token}}),
            ("post", "/login", {"json": {"username": "alice", "password": PASSWORD}}),
            ("get", "/me", {"headers": {"Authorization": f"Bearer {alice.access_token}"}}),
            ("get", "/readyz", {}),
        ]
        for method, path, kwargs in calls:
            async with getattr(stack.auth, method)(path, **kwargs) as response:
                assert response.status == 503, (path, await response.text())
                body = await response.json()
                assert "access_token" not in body
                if path != "/readyz":
                    assert body["error"] == "temporarily_unavailable"
                    assert response.headers["Retry-After"] == "1"
        async with stack.auth.get("/healthz") as response:
            assert response.status == 200
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    # Once Redis is back, nothing needs a restart.
    await stack.token("alice", PASSWORD)

"""The chat service's `/metrics`: who may read it, and that what it counts moves with what
happens (the real auth service and chat instances on the suite's Redis)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from common.config import ConfigError
from service.errors import Refusal
from service.settings import load_settings
from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import (
    ChatUser,
    Stack,
    api,
    connect,
    join,
    receive_type,
    send,
    stalled_member,
)
from tests.chat.rawws import read_until_eof
from tests.conftest import Store
from tests.redis_server import free_port
from tests.scrape import BASIC, Samples, scrape

Client = TestClient[Any, Any]
FAMILIES = {
    "chat_sockets_open": "gauge",
    "chat_handshakes": "counter",
    "chat_introspection_requests": "counter",
    "chat_introspection_cache": "counter",
    "chat_introspection_duration_seconds": "histogram",
    "chat_messages_in": "counter",
    "chat_messages_out": "counter",
    "chat_fanout_duration_seconds": "histogram",
    "chat_slow_consumer_closes": "counter",
    "chat_redis_link_up": "gauge",
    "chat_room_repairs": "counter",
    "chat_recoveries": "counter",
    "chat_replayed_messages": "counter",
    "chat_gaps": "counter",
    "chat_presence_entries": "gauge",
    "chat_http_requests": "counter",
}


UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.fixture
def store(redis_url: str) -> Store:
    """One Redis: what is counted does not depend on the store."""
    return Store(redis_url)


# -- who may read them -----------------------------------------------------------------------


async def test_metrics_are_closed_without_credentials(stack: Stack) -> None:
    async with stack.a.get("/metrics") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == (
            'Basic realm="metrics", Bearer realm="metrics"'
        )
        assert response.headers["Cache-Control"] == "no-store"
        assert (await response.json())["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        ("Basic " + "Y2hhdDp3cm9uZw==", "invalid_client"),  # chat:wrong
        ("Basic !!!", "invalid_client"),
        ("Bearer not-a-token", "invalid_token"),
    ],
)
async def test_bad_credentials_are_refused(stack: Stack, authorization: str, error: str) -> None:
    async with stack.a.get("/metrics", headers={"Authorization": authorization}) as response:
        assert response.status == 401
        assert "WWW-Authenticate" in response.headers
        body = await response.json()
        assert (body["error"], bool(body["error_description"])) == (error, True)


async def test_the_services_own_client_credentials_read_them(stack: Stack) -> None:
    samples = await scrape(stack.a, BASIC)
    assert {name: samples.families.get(name) for name in FAMILIES} == FAMILIES


async def test_a_server_token_reads_them(stack: Stack) -> None:
    token = await stack.server_token()
    samples = await scrape(stack.a, {"Authorization": f"Bearer {token}"})
    assert "chat_handshakes" in samples.families


@pytest.mark.parametrize("who", ["user", "client without chat:server"])
async def test_a_token_without_the_server_scope_is_forbidden(
    stack: Stack, alice: ChatUser, who: str
) -> None:
    token = alice.access_token if who == "user" else await stack.server_token(scope="chat")
    headers = {"Authorization": f"Bearer {token}"}
    async with stack.a.get("/metrics", headers=headers) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


async def test_the_operator_may_open_them(make_chat: ChatFactory) -> None:
    chat = await make_chat(CHAT_METRICS_PUBLIC="true")
    samples = await scrape(chat, {})
    assert "chat_sockets_open" in samples.families


async def test_with_the_auth_service_away_a_token_waits_and_basic_still_reads(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(AUTH_URL=f"http://127.0.0.1:{free_port()}")
    headers = {"Authorization": f"Bearer {alice.access_token}"}
    async with chat.get("/metrics", headers=headers) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"] == "temporarily_unavailable"
    samples = await scrape(chat, BASIC)  # the instance's own credentials need nobody else
    assert samples("chat_introspection_requests_total", result="unavailable") == 1


def test_a_bad_metrics_setting_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="CHAT_METRICS_PUBLIC"):
        load_settings({"CHAT_METRICS_PUBLIC": "maybe"})


# -- what they count -------------------------------------------------------------------------


def outcomes(samples: Samples) -> dict[str, float]:
    names = ["accepted", *(refusal.value for refusal in Refusal)]
    return {name: samples("chat_handshakes_total", outcome=name) for name in names}


async def test_handshakes_are_counted_by_outcome(stack: Stack, alice: ChatUser) -> None:
    before = outcomes(await scrape(stack.a))
    ws = await connect(stack.a, alice.access_token)
    async with stack.a.get("/ws", headers=UPGRADE) as refused:  # no credential
        assert refused.status == 401
    after = outcomes(await scrape(stack.a))
    moved = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert moved == {"accepted": 1, "no_credential": 1}
    await ws.close()


async def test_centrifugo_connects_are_counted_as_handshakes(stack: Stack, alice: ChatUser) -> None:
    """A socket upgraded before its credential (Centrifugo's `connect` carries it) is a
    handshake too: counted by outcome when its `connect` is decided."""
    before = outcomes(await scrape(stack.a))
    accepted = await stack.a.ws_connect("/connection/websocket")
    await accepted.send_json({"id": 1, "connect": {"token": alice.access_token}})
    assert "connect" in await accepted.receive_json(timeout=5)
    refused = await stack.a.ws_connect("/connection/websocket")
    await refused.send_json({"id": 1, "connect": {}})
    assert (await refused.receive_json(timeout=5))["error"]["code"] == 101
    after = outcomes(await scrape(stack.a))
    moved = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert moved == {"accepted": 1, "no_credential": 1}
    await accepted.close()
    await refused.close()


async def test_introspection_is_counted_and_timed_with_its_cache(
    stack: Stack, alice: ChatUser
) -> None:
    before = await scrape(stack.a)
    first = await connect(stack.a, alice.access_token)
    second = await connect(stack.a, alice.access_token)  # answered from the cache
    after = await scrape(stack.a)

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert moved("chat_introspection_requests_total", result="active") == 1
    assert moved("chat_introspection_cache_total", result="miss") == 1
    assert moved("chat_introspection_cache_total", result="hit") == 1
    assert moved("chat_introspection_duration_seconds_count") == 1
    for ws in (first, second):
        await ws.close()


async def test_sockets_and_presence_are_read_when_scraped(stack: Stack, alice: ChatUser) -> None:
    ws = await connect(stack.a, alice.access_token)
    await join(ws, "lobby")
    samples = await scrape(stack.a)
    assert samples("chat_sockets_open") == 1
    assert samples("chat_presence_entries") == 1
    assert samples("chat_redis_link_up", link="redis") == 1
    (connection,) = stack.a.app[NODE].sockets
    await ws.close()
    await asyncio.wait_for(connection.finished.wait(), 5)
    assert (await scrape(stack.a))("chat_sockets_open") == 0


async def test_on_a_cluster_each_link_is_a_gauge(
    make_chat: ChatFactory, alice: ChatUser, cluster_nodes: tuple[tuple[str, int], ...]
) -> None:
    seeds = ",".join(f"{host}:{port}" for host, port in cluster_nodes)
    chat = await make_chat(REDIS_CLUSTER_NODES=seeds)
    ws = await connect(chat, alice.access_token)
    await join(ws, "lobby")
    samples = await scrape(chat)
    links = {labels["link"] for labels in samples.labels("chat_redis_link_up")}
    (shard,) = links - {"events"}  # the primary that owns the room's slot
    assert samples("chat_redis_link_up", link="events") == 1
    assert samples("chat_redis_link_up", link=shard) == 1
    assert re.fullmatch(r"127\.0\.0\.1:\d+", shard)  # host:port of a node, not a room
    await ws.close()


async def test_a_message_is_counted_in_and_out_on_every_instance(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sender = await connect(stack.a, alice.access_token)
    echo = await connect(stack.a, alice.access_token)
    listener = await connect(stack.b, bob.access_token)
    for ws in (sender, echo, listener):
        await join(ws, "lobby")
    before = {name: await scrape(getattr(stack, name)) for name in ("a", "b")}
    await send(sender, "lobby", "counted")
    for ws in (sender, echo, listener):
        await receive_type(ws, "message")
    after = {name: await scrape(getattr(stack, name)) for name in ("a", "b")}

    def moved(instance: str, name: str) -> float:
        return after[instance](name) - before[instance](name)

    assert moved("a", "chat_messages_in_total") == 1
    assert moved("b", "chat_messages_in_total") == 0
    assert moved("a", "chat_messages_out_total") == 2  # sender and echo
    assert moved("b", "chat_messages_out_total") == 1
    for instance in ("a", "b"):  # once per message and instance
        assert moved(instance, "chat_fanout_duration_seconds_count") == 1
        assert after[instance]("chat_fanout_duration_seconds_sum") < 5
    for ws in (sender, echo, listener):
        await ws.close()


async def test_recoveries_and_gaps_are_counted(stack: Stack, alice: ChatUser) -> None:
    ws = await connect(stack.a, alice.access_token)
    joined = await join(ws, "lobby")
    await send(ws, "lobby", "one")
    await ws.close()
    rejoining = await connect(stack.a, alice.access_token)
    before = await scrape(stack.a)
    await join(rejoining, "lobby", since={"offset": joined["offset"], "epoch": joined["epoch"]})
    await join(rejoining, "other", since={"offset": 3, "epoch": "not-its-epoch"})
    await receive_type(rejoining, "gap")
    after = await scrape(stack.a)
    assert (
        after("chat_recoveries_total", recovered="true")
        - before("chat_recoveries_total", recovered="true")
        == 1
    )
    assert (
        after("chat_recoveries_total", recovered="false")
        - before("chat_recoveries_total", recovered="false")
        == 1
    )
    assert after("chat_replayed_messages_total") - before("chat_replayed_messages_total") == 1
    assert after("chat_gaps_total") - before("chat_gaps_total") == 1
    await rejoining.close()


async def test_a_lost_link_is_counted_as_repairs(
    make_chat: ChatFactory, alice: ChatUser, redis_url: str
) -> None:
    chat = await make_chat()
    ws = await connect(chat, alice.access_token)
    await join(ws, "lobby")
    broker = chat.app[NODE].broker
    reconnects = broker.reconnects  # type: ignore[attr-defined]
    before = await scrape(chat)
    client = aioredis.Redis.from_url(redis_url)
    await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await client.aclose()
    async with asyncio.timeout(5):
        await broker.wait_for(  # type: ignore[attr-defined]
            lambda: broker.reconnects == reconnects + 1  # type: ignore[attr-defined]
        )
    # The repair reads history in a task of its own: the next message is delivered after it.
    await send(ws, "lobby", "after the loss")
    await receive_type(ws, "message")
    after = await scrape(chat)
    assert after("chat_room_repairs_total") - before("chat_room_repairs_total") == 1
    assert after("chat_redis_link_up", link="redis") == 1
    await ws.close()


async def test_a_slow_consumer_close_is_counted(
    make_chat: ChatFactory, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(
        CHAT_OUTBOX_FRAMES="4",
        CHAT_SOCKET_SNDBUF="4096",
        CHAT_RATE_PER_SECOND="100000",
        CHAT_RATE_BURST="100000",
    )
    sender = await connect(chat, alice.access_token)
    await join(sender, "lobby")
    slow, slow_reader, slow_writer = await stalled_member(chat, bob.access_token, "lobby")
    before = (await scrape(chat))("chat_slow_consumer_closes_total")
    text = "z" * 4000
    async with asyncio.timeout(10):
        while slow.close_code is None:  # until the server gives up on the stalled reader
            await sender.send_json({"op": "send", "room": "lobby", "text": text})
            await receive_type(sender, "ack")
            await receive_type(sender, "message")
    assert slow.close_code == 1013
    after = (await scrape(chat))("chat_slow_consumer_closes_total")
    assert after - before == 1
    await asyncio.wait_for(read_until_eof(slow_reader), 10)
    slow_writer.close()
    await sender.close()


async def test_api_requests_are_counted_by_route_pattern_and_status(
    stack: Stack, alice: ChatUser
) -> None:
    server = await stack.server_token()
    before = await scrape(stack.a)
    status, _ = await api(stack.a, "GET", "/api/rooms/lobby/presence", None)
    assert status == 401
    status, _ = await api(stack.a, "POST", "/api/rooms/lobby/messages", server, {"text": "hi"})
    assert status == 201
    status, _ = await api(stack.a, "GET", "/no/such/path", None)
    assert status == 404
    after = await scrape(stack.a)

    def moved(method: str, route: str, status: str) -> float:
        labels = {"method": method, "route": route, "status": status}
        return after("chat_http_requests_total", **labels) - before(
            "chat_http_requests_total", **labels
        )

    assert moved("GET", "/api/rooms/{room}/presence", "401") == 1
    assert moved("POST", "/api/rooms/{room}/messages", "201") == 1
    assert moved("GET", "unmatched", "404") == 1
    assert after("chat_messages_in_total") - before("chat_messages_in_total") == 1
    routes = {labels["route"] for labels in after.labels("chat_http_requests_total")}
    assert not any("lobby" in route or "no/such" in route for route in routes)

"""The Centrifugo protocol at /connection/websocket frame by frame (a plain WebSocket client):
the connect phase, its bounds, pings, and each refusal's code."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.chat.centrifugo_sdk import address, connected, next_of, subscribed
from tests.chat.conftest import ORIGIN, ChatFactory
from tests.chat.helpers import (
    DEADLINE,
    ChatUser,
    Client,
    Stack,
    api,
    closed_with,
    receive,
)
from tests.conftest import PASSWORD, Store
from tests.scrape import scrape

PATH = "/connection/websocket"


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis_url)


async def send(ws: aiohttp.ClientWebSocketResponse, *commands: dict[str, Any]) -> None:
    """One frame carrying `commands`, newline-delimited as the SDKs send them."""
    await ws.send_str("\n".join(json.dumps(c) for c in commands))


async def reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next reply or push (pings skipped)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            frame: dict[str, Any] = await receive(ws)
            if frame:
                return frame


async def connect_raw(
    client: Client, token: str | None, **kwargs: Any
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await client.ws_connect(PATH, **kwargs)
    await send(ws, {"id": 1, "connect": {} if token is None else {"token": token}})
    return ws, await reply(ws)


async def test_connect_says_who_and_when_to_refresh(stack: Stack, alice: ChatUser) -> None:
    ws, answer = await connect_raw(stack.a, alice.access_token)
    result = answer["connect"]
    assert answer["id"] == 1
    assert result["data"] == {"user": {"id": alice.id, "username": "alice"}}
    assert result["expires"] is True
    assert 0 < result["ttl"] < 900  # before the token's 900 s are up
    assert (result["ping"], result["pong"]) == (25, True)
    await ws.close()


async def test_no_connect_in_time_is_stale(make_chat: ChatFactory) -> None:
    chat = await make_chat(CHAT_CENTRIFUGO_CONNECT_TIMEOUT="0.3")
    ws = await chat.ws_connect(PATH)
    assert await closed_with(ws) == 3502


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        json.dumps({"id": 1, "subscribe": {"channel": "lobby"}}),  # before connect
        json.dumps({"id": 1, "connect": {}, "publish": {}}),  # two methods in one
        json.dumps({"connect": {}}),  # no id
        "\n".join([json.dumps({"id": 1, "connect": {}})] * 101),  # more commands than allowed
    ],
)
async def test_a_malformed_first_frame_is_a_bad_request(stack: Stack, frame: str) -> None:
    ws = await stack.a.ws_connect(PATH)
    await ws.send_str(frame)
    assert await closed_with(ws) == 3501


async def test_no_credential_is_unauthorized_and_a_bad_one_invalid(stack: Stack) -> None:
    ws, answer = await connect_raw(stack.a, None)
    assert answer == {"id": 1, "error": {"code": 101, "message": answer["error"]["message"]}}
    await ws.close()
    ws = await stack.a.ws_connect(PATH)
    await send(ws, {"id": 1, "connect": {"token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}})
    assert await closed_with(ws) == 3500


async def test_only_the_json_encoding_is_spoken(stack: Stack) -> None:
    response = await stack.a.get(
        PATH,
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "centrifuge-protobuf",
        },
    )
    assert response.status == 400


async def test_the_session_cookie_connects_from_an_allowed_origin_only(
    stack: Stack, alice: ChatUser
) -> None:
    cookie = await stack.session_cookie("alice", PASSWORD)
    headers = {"Cookie": f"chat_session={cookie}"}
    ws, answer = await connect_raw(stack.a, None, headers={**headers, "Origin": ORIGIN})
    assert answer["connect"]["data"]["user"]["username"] == "alice"
    await ws.close()
    ws, answer = await connect_raw(
        stack.a, None, headers={**headers, "Origin": "https://evil.example"}
    )
    assert answer["error"]["code"] == 103
    await ws.close()


async def test_the_server_pings_and_a_peer_that_never_answers_is_closed(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_CENTRIFUGO_PING="1")
    ws, _ = await connect_raw(chat, alice.access_token)
    assert await receive(ws, 3) == {}  # a ping
    await ws.send_str("{}")  # the pong
    assert await receive(ws, 3) == {}
    assert await closed_with(ws, 3) == 3012  # this one was never answered


async def test_each_refusal_has_centrifugos_code(stack: Stack, alice: ChatUser) -> None:
    ws, _ = await connect_raw(stack.a, alice.access_token)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"publish": {"channel": "lobby", "data": {"text": "x"}}}, 103),  # not subscribed
        ({"subscribe": {"channel": "nowhere:x"}}, 102),  # unknown namespace
        ({"subscribe": {"channel": "not a room"}}, 102),
        ({"subscribe": {"channel": "dm:bob,alice"}}, 102),  # a DM name in the wrong order
        ({"subscribe": {"channel": "dm:bob,carol"}}, 103),
        ({"subscribe": {"channel": "lobby"}}, 0),
        ({"subscribe": {"channel": "lobby"}}, 105),  # already
        ({"publish": {"channel": "lobby", "data": {"text": "x" * 4097}}}, 107),
        ({"publish": {"channel": "lobby", "data": "not an object"}}, 107),
        ({"rpc": {"method": "x"}}, 108),
        ({"history": {"channel": "lobby", "limit": "ten"}}, 107),
    ]
    for n, (body, code) in enumerate(cases, start=2):
        await send(ws, {"id": n, **body})
        answer = await reply(ws)
        assert answer["id"] == n
        assert answer.get("error", {}).get("code", 0) == code, (body, answer)
    await ws.close()


async def test_commands_beyond_the_rate_are_refused_111(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_RATE_BURST="3", CHAT_RATE_PER_SECOND="0.1")
    ws, _ = await connect_raw(chat, alice.access_token)
    await send(ws, *({"id": n, "ping": {}} for n in range(2, 7)))
    answers = [await reply(ws) for _ in range(5)]
    assert [a.get("error", {}).get("code") for a in answers] == [None] * 3 + [111] * 2
    assert answers[-1]["error"]["temporary"] is True
    await ws.close()


async def test_a_frame_over_the_limit_closes_1009(stack: Stack, alice: ChatUser) -> None:
    ws, _ = await connect_raw(stack.a, alice.access_token)
    await ws.send_str(json.dumps({"id": 2, "ping": {}, "pad": "x" * 70_000}))
    assert await closed_with(ws) == 1009


async def test_a_removed_member_gets_an_unsubscribe_push(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    created, _ = await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": "private:r"})
    assert created == 201
    path = "/api/rooms/private:r/members/bob"
    assert (await api(stack.a, "PUT", path, alice.access_token))[0] == 204
    ws, _ = await connect_raw(stack.b, bob.access_token)
    await send(ws, {"id": 2, "subscribe": {"channel": "private:r"}})
    assert "subscribe" in await reply(ws)
    assert (await api(stack.a, "DELETE", path, alice.access_token))[0] == 204
    push = await reply(ws)
    assert push == {
        "push": {
            "channel": "private:r",
            "unsubscribe": {"code": 2000, "reason": "removed from the room"},
        }
    }
    await send(ws, {"id": 3, "subscribe": {"channel": "private:r"}})
    assert (await reply(ws))["error"]["code"] == 103
    await ws.close()


async def test_the_server_apis_disconnect_is_3011(stack: Stack, alice: ChatUser) -> None:
    ws, _ = await connect_raw(stack.a, alice.access_token)
    server = await stack.server_token()
    status, _ = await api(stack.b, "POST", "/api/users/alice/disconnect", server)
    assert status == 204
    assert await closed_with(ws) == 3011


async def test_a_gap_is_an_unsubscribe_2500_and_the_sdk_subscribes_again(
    make_chat: ChatFactory, alice: ChatUser, redis_url: str
) -> None:
    chat = await make_chat(CHAT_NAMESPACES='{"": {"history_size": 0}}')
    client, _ = await connected(address(chat), alice.access_token)
    try:
        sub, events = await subscribed(client, "lobby")
        first = await next_of(events.subscribed)
        assert not first.positioned  # no history: nothing to recover from
        assert (await next_of(events.subscribing)).code == 0  # its first subscribe
        redis = aioredis.Redis.from_url(redis_url)
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await redis.aclose()
        # The link returns, messages may have been lost: the SDK is told, and subscribes again.
        again = await next_of(events.subscribing)
        assert (again.code, again.reason) == (2500, "insufficient state")
        await next_of(events.subscribed)
        await sub.publish({"text": "at most once"})
        assert (await next_of(events.publications)).pub.data["text"] == "at most once"
    finally:
        await client.disconnect()


async def test_refused_connect_tokens_count_against_the_address_like_handshakes(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_HANDSHAKE_FAILURES="3", CHAT_HANDSHAKE_FAILURE_WINDOW="60")
    for _ in range(3):
        ws = await chat.ws_connect(PATH)
        await send(ws, {"id": 1, "connect": {"token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}})
        assert await closed_with(ws) == 3500
    response = await chat.get("/ws", headers={"Authorization": f"Bearer {alice.access_token}"})
    assert response.status == 429  # the address is refused now, on either endpoint


async def test_a_connect_without_token_uses_the_upgrades_bearer_header(
    stack: Stack, alice: ChatUser
) -> None:
    ws, answer = await connect_raw(
        stack.a, None, headers={"Authorization": f"Bearer {alice.access_token}"}
    )
    assert answer["connect"]["data"]["user"]["id"] == alice.id
    await ws.close()


async def test_refresh_keeps_the_user_and_refuses_another_or_a_bad_token(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    ws, _ = await connect_raw(stack.a, alice.access_token)
    fresh = (await stack.token("alice", PASSWORD))["access_token"]
    await send(ws, {"id": 2, "refresh": {"token": fresh}})
    refreshed = (await reply(ws))["refresh"]
    assert refreshed["expires"] is True
    assert 0 < refreshed["ttl"] < 900
    await send(ws, {"id": 3, "refresh": {"token": bob.access_token}})
    assert (await reply(ws))["error"]["code"] == 103  # another user's: refused, still open
    await send(ws, {"id": 4, "refresh": {"token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}})
    assert await closed_with(ws) == 3500


async def test_sockets_waiting_for_connect_wait_apart_from_the_servers_slots(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    """A socket upgraded before its credential takes a slot of its own small budget, not one
    of the server's: silent ones can refuse other Centrifugo upgrades (503, counted), never
    the users who have a credential."""
    chat = await make_chat(CHAT_CENTRIFUGO_MAX_PENDING="2", CHAT_MAX_CONNECTIONS="2")
    before = (await scrape(chat))("chat_handshakes_total", outcome="server_full")
    silent = [await chat.ws_connect(PATH) for _ in range(2)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await chat.ws_connect(PATH)
    assert refused.value.status == 503
    assert (await scrape(chat))("chat_handshakes_total", outcome="server_full") == before + 1
    native = await chat.ws_connect("/ws", headers={"Authorization": f"Bearer {alice.access_token}"})
    assert (await receive(native))["type"] == "hello"  # the server's slots are untouched
    await send(silent[0], {"id": 1, "connect": {"token": alice.access_token}})
    assert "connect" in await reply(silent[0])  # now on the server's second slot
    for ws in [*silent, native]:
        await ws.close()


async def test_a_socket_that_never_connects_counts_against_its_address(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(
        CHAT_CENTRIFUGO_CONNECT_TIMEOUT="0.2",
        CHAT_HANDSHAKE_FAILURES="2",
        CHAT_HANDSHAKE_FAILURE_WINDOW="60",
    )
    for _ in range(2):
        assert await closed_with(await chat.ws_connect(PATH)) == 3502
    response = await chat.get("/ws", headers={"Authorization": f"Bearer {alice.access_token}"})
    assert response.status == 429  # the address is refused now, as after refused credentials


async def test_a_throttled_client_that_answers_pings_stays(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    """A pong beyond the rate still counts as an answer: throttling is 111, not 3012."""
    chat = await make_chat(
        CHAT_CENTRIFUGO_PING="1", CHAT_RATE_BURST="1", CHAT_RATE_PER_SECOND="0.1"
    )
    ws, _ = await connect_raw(chat, alice.access_token)
    assert await receive(ws, 3) == {}  # a ping
    await send(ws, {"id": 2, "ping": {}})  # spends the one command the rate allows
    assert (await reply(ws))["id"] == 2
    for _ in range(2):
        await ws.send_str("{}")  # the pong, beyond the rate
        assert await receive(ws, 3) == {}  # the next ping, not a close
    await ws.close()

"""Room policies on every path: DMs, broadcast rooms (`send: server`), the API's publish and
read, disconnect, and the race of a join served while its user is removed."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import (
    ChatUser,
    Stack,
    api,
    closed_with,
    connect,
    join,
    receive_type,
    send,
)
from tests.conftest import PASSWORD

ROOM = "private:plans"


async def _error_for(ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> str:
    await ws.send_json(frame)
    return str((await receive_type(ws, "error"))["code"])


# -- DMs -------------------------------------------------------------------------------------


async def test_only_the_two_users_may_join_their_dm(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    carol = await stack.user("carol", PASSWORD)
    alice_ws, bob_ws = (
        await connect(stack.a, alice.access_token),
        await connect(stack.b, bob.access_token),
    )
    await join(alice_ws, "dm:alice,bob")
    await join(bob_ws, "dm:alice,bob")
    await send(alice_ws, "dm:alice,bob", "just us")
    assert (await receive_type(bob_ws, "message"))["text"] == "just us"
    carol_ws = await connect(stack.a, carol.access_token)
    assert await _error_for(carol_ws, {"op": "join", "room": "dm:alice,bob"}) == "forbidden"
    assert await _error_for(carol_ws, {"op": "history", "room": "dm:alice,bob"}) == "forbidden"
    status, body = await api(stack.a, "GET", "/api/rooms/dm:alice,bob/messages", carol.access_token)
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await api(stack.a, "GET", "/api/rooms/dm:alice,bob/messages", bob.access_token)
    assert status == 200
    assert [m["text"] for m in body["messages"]] == ["just us"]


@pytest.mark.parametrize(
    "room", ["dm:bob,alice", "dm:Alice,bob", "dm:alice,alice", "dm:alice", "dm:alice,bob,carol"]
)
async def test_a_dm_has_one_spelling(stack: Stack, alice: ChatUser, room: str) -> None:
    ws = await connect(stack.a, alice.access_token)
    assert await _error_for(ws, {"op": "join", "room": room}) == "bad_room"
    status, body = await api(stack.a, "GET", f"/api/rooms/{room}/messages", alice.access_token)
    assert (status, body["error"]) == (400, "bad_room")


# -- who may send ----------------------------------------------------------------------------


async def test_a_broadcast_room_takes_messages_from_the_server_only(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser
) -> None:
    namespaces = '{"": {}, "news": {"send": "server"}}'
    chat = await make_chat(CHAT_NAMESPACES=namespaces)
    ws = await connect(chat, alice.access_token)
    await join(ws, "news:today")
    assert await _error_for(ws, {"op": "send", "room": "news:today", "text": "me?"}) == "forbidden"
    status, body = await api(
        chat, "POST", "/api/rooms/news:today/messages", alice.access_token, {"text": "me?"}
    )
    assert (status, body["error"]) == (403, "forbidden")
    server = await stack.server_token()
    status, body = await api(chat, "POST", "/api/rooms/news:today/messages", server, {"text": "hi"})
    assert status == 201
    message = await receive_type(ws, "message")
    assert message["from"] == {"id": "client:chat", "username": "chat"}
    assert message["offset"] == body["offset"]
    assert message["id"] == body["id"]


async def test_the_api_publishes_through_the_same_append(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    bob_ws = await connect(stack.b, bob.access_token)
    joined = await join(bob_ws, "lobby")
    body = {"text": "from the API", "idempotency_key": "k1"}
    status, first = await api(
        stack.a, "POST", "/api/rooms/lobby/messages", alice.access_token, body
    )
    assert status == 201
    assert first["offset"] == joined["offset"] + 1
    message = await receive_type(bob_ws, "message")
    assert message["from"] == {"id": alice.id, "username": "alice"}
    assert (message["id"], message["offset"]) == (first["id"], first["offset"])
    status, repeat = await api(
        stack.b, "POST", "/api/rooms/lobby/messages", alice.access_token, body
    )
    assert (status, repeat) == (200, first)  # the first answer; nothing published again
    await send(bob_ws, "lobby", "next")
    assert (await receive_type(bob_ws, "message"))["offset"] == first["offset"] + 1


async def test_reading_pages_back_and_forward(stack: Stack, alice: ChatUser) -> None:
    for n in range(5):
        await api(
            stack.a, "POST", "/api/rooms/lobby/messages", alice.access_token, {"text": f"m{n}"}
        )
    status, page = await api(
        stack.a, "GET", "/api/rooms/lobby/messages?limit=2", alice.access_token
    )
    assert status == 200
    assert [m["text"] for m in page["messages"]] == ["m3", "m4"]
    first = page["messages"][0]["offset"]
    _, older = await api(
        stack.a, "GET", f"/api/rooms/lobby/messages?before={first}", alice.access_token
    )
    assert [m["text"] for m in older["messages"]] == ["m0", "m1", "m2"]
    _, newer = await api(
        stack.a, "GET", f"/api/rooms/lobby/messages?after={first}&limit=1", alice.access_token
    )
    assert [m["text"] for m in newer["messages"]] == ["m4"]
    assert older["epoch"] == page["epoch"] == newer["epoch"]
    for query in ("limit=0", "limit=101", "before=x", "before=1&after=1", "after=-1"):
        status, body = await api(
            stack.a, "GET", f"/api/rooms/lobby/messages?{query}", alice.access_token
        )
        assert (status, body["error"]) == (400, "invalid_request"), query


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"text": ""}, "bad_text"),
        ({"text": 5}, "bad_text"),
        ({"text": "x" * 4097}, "too_long"),
        ({"text": "x", "idempotency_key": "k" * 65}, "bad_idempotency_key"),
        ([1, 2], "invalid_request"),
    ],
)
async def test_a_bad_message_is_refused(
    stack: Stack, alice: ChatUser, body: Any, error: str
) -> None:
    status, answer = await api(
        stack.a, "POST", "/api/rooms/lobby/messages", alice.access_token, body
    )
    assert (status, answer["error"]) == (400, error)


# -- disconnect ------------------------------------------------------------------------------


async def test_disconnect_closes_every_socket_of_the_user_on_every_instance(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sockets = [
        await connect(stack.a, alice.access_token),
        await connect(stack.b, alice.access_token),
    ]
    bystander = await connect(stack.b, bob.access_token)
    status, body = await api(stack.a, "POST", "/api/users/alice/disconnect", bob.access_token)
    assert (status, body["error"]) == (403, "forbidden")  # a user may not
    server = await stack.server_token()
    status, _ = await api(stack.a, "POST", "/api/users/ALICE/disconnect", server)
    assert status == 204
    codes = await asyncio.gather(*(closed_with(ws, deadline=1.0) for ws in sockets))
    assert codes == [4004, 4004]
    await bystander.send_json({"op": "ping"})
    await receive_type(bystander, "pong")
    status, body = await api(stack.a, "POST", "/api/users/nobody/disconnect", server)
    assert (status, body["error"]) == (404, "not_found")
    # 4004 "may reconnect": the credential still works
    await connect(stack.a, alice.access_token)


# -- the removal race ------------------------------------------------------------------------


async def _private_room_with(stack: Stack, owner: ChatUser, member: ChatUser) -> None:
    await api(stack.a, "POST", "/api/rooms", owner.access_token, {"room": ROOM})
    await api(stack.a, "PUT", f"/api/rooms/{ROOM}/members/{member.username}", owner.access_token)


async def _removed_while_joining(
    stack: Stack, owner: ChatUser, member: ChatUser, held: asyncio.Event
) -> aiohttp.ClientWebSocketResponse:
    """`member` joins on instance B; once its join is `held`, `owner` removes it."""
    ws = await connect(stack.b, member.access_token)
    await ws.send_json({"op": "join", "room": ROOM})
    await asyncio.wait_for(held.wait(), 5)
    path = f"/api/rooms/{ROOM}/members/{member.username}"
    status, _ = await api(stack.a, "DELETE", path, owner.access_token)
    assert status == 204
    return ws


async def test_a_removal_while_the_join_reads_history_refuses_the_join(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    await _private_room_with(stack, alice, bob)
    node = stack.b.app[NODE]
    reading, release = asyncio.Event(), asyncio.Event()
    history = node.hub._history
    tail = history.tail

    async def held_tail(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        await release.wait()
        return await tail(*args, **kwargs)

    history.tail = held_tail  # type: ignore[method-assign]
    removal_seen = asyncio.Event()
    take_out = node.hub._take_out

    def seen_take_out(*args: Any) -> None:
        take_out(*args)
        removal_seen.set()

    node.hub._take_out = seen_take_out  # type: ignore[method-assign]
    ws = await _removed_while_joining(stack, alice, bob, reading)  # subscribed, reading history
    await asyncio.wait_for(removal_seen.wait(), 5)  # it reached this instance's room
    release.set()
    assert (await receive_type(ws, "error"))["code"] == "forbidden"
    assert ROOM not in node.hub.rooms()  # nobody joined: the room was dropped here


async def test_a_removal_before_the_subscription_is_caught_by_the_recheck(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    await _private_room_with(stack, alice, bob)
    node = stack.b.app[NODE]
    subscribing, release = asyncio.Event(), asyncio.Event()
    subscribe = node.broker.subscribe

    async def held_subscribe(room: str) -> None:
        subscribing.set()
        await release.wait()  # the removal is published before this instance listens
        await subscribe(room)

    node.broker.subscribe = held_subscribe  # type: ignore[method-assign]
    ws = await _removed_while_joining(stack, alice, bob, subscribing)  # the first check passed
    release.set()
    assert (await receive_type(ws, "error"))["code"] == "forbidden"

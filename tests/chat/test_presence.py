"""Presence: per user across instances, `member_joined` / `member_left` when a user's first
socket enters and its last leaves, the grace for closed sockets, and who may ask."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from common.redis import connect as connect_redis
from service.rooms import presence as presence_module
from service.rooms.presence import PresenceStore
from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Stack, api, connect, join, receive_type, send
from tests.conftest import PASSWORD


async def _presence(ws: aiohttp.ClientWebSocketResponse, room: str) -> dict[str, Any]:
    await ws.send_json({"op": "presence", "room": room})
    return await receive_type(ws, "presence")


async def _frames_until_marker(
    ws: aiohttp.ClientWebSocketResponse, marker: str
) -> list[dict[str, Any]]:
    """Every frame before the message `marker` (sent by someone in the same room)."""
    seen = []
    async with asyncio.timeout(5):
        while True:
            frame = await _any(ws)
            if frame.get("type") == "message" and frame.get("text") == marker:
                return seen
            seen.append(frame)


async def _any(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive()
    assert message.type == aiohttp.WSMsgType.TEXT, message
    frame: dict[str, Any] = message.json()
    return frame


async def test_presence_counts_users_and_their_sockets_on_every_instance(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sockets = [
        await connect(stack.a, alice.access_token),
        await connect(stack.b, alice.access_token),
        await connect(stack.b, bob.access_token),
    ]
    for ws in sockets:
        await join(ws, "lobby")
    answer = await _presence(sockets[0], "lobby")
    assert answer["count"] == 2
    assert answer["members"] == [
        {"id": alice.id, "username": "alice", "connections": 2},
        {"id": bob.id, "username": "bob", "connections": 1},
    ]
    status, body = await api(stack.b, "GET", "/api/rooms/lobby/presence", bob.access_token)
    assert status == 200
    assert body == {"room": "lobby", "count": 2, "members": answer["members"]}


async def test_joined_and_left_for_a_users_first_and_last_socket(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    watcher = await connect(stack.a, bob.access_token)
    await join(watcher, "lobby")
    first = await connect(stack.b, alice.access_token)
    await join(first, "lobby")
    joined = await receive_type(watcher, "member_joined")
    assert joined == {
        "type": "member_joined",
        "room": "lobby",
        "user": {"id": alice.id, "username": "alice"},
    }
    second = await connect(stack.a, alice.access_token)
    await join(second, "lobby")  # not her first socket: no event
    await second.send_json({"op": "leave", "room": "lobby"})
    await receive_type(second, "left")  # not her last: no event
    started = time.monotonic()
    await first.send_json({"op": "leave", "room": "lobby"})
    left = await receive_type(watcher, "member_left")
    assert left["user"] == {"id": alice.id, "username": "alice"}
    assert time.monotonic() - started < 2.0  # SPEC: within 2 s of a leave
    # the watcher saw exactly one joined and one left for alice: check nothing came between
    await join(second, "lobby")
    assert (await receive_type(watcher, "member_joined"))["user"]["id"] == alice.id


async def test_a_reconnect_within_the_grace_makes_no_pair(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    a, b = await make_chat(CHAT_PRESENCE_GRACE="1.5"), await make_chat(CHAT_PRESENCE_GRACE="1.5")
    watcher = await connect(a, bob.access_token)
    await join(watcher, "lobby")
    gone = await connect(a, alice.access_token)
    await join(gone, "lobby")
    await receive_type(watcher, "member_joined")
    await gone.close()  # the network blips ...
    back = await connect(b, alice.access_token)  # ... and she is back, elsewhere
    await join(back, "lobby")
    await a.app[NODE].stores.tracker.drain()  # the closed socket's exit, after its grace
    await send(watcher, "lobby", "marker")
    seen = await _frames_until_marker(watcher, "marker")
    assert [f["type"] for f in seen if f["type"].startswith("member_")] == []
    assert (await _presence(watcher, "lobby"))["count"] == 2


async def test_a_closed_socket_leaves_after_the_grace(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(CHAT_PRESENCE_GRACE="1")
    watcher = await connect(chat, bob.access_token)
    await join(watcher, "lobby")
    ws = await connect(chat, alice.access_token)
    await join(ws, "lobby")
    await receive_type(watcher, "member_joined")
    started = time.monotonic()
    await ws.close()
    left = await receive_type(watcher, "member_left")
    elapsed = time.monotonic() - started
    assert left["user"]["id"] == alice.id
    assert 1.0 <= elapsed < 1.0 + 2.0  # SPEC: within the grace + 2 s, and not before the grace


async def test_a_removed_member_leaves_presence_at_once(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    room = "private:plans"
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": room})
    await api(stack.a, "PUT", f"/api/rooms/{room}/members/bob", alice.access_token)
    owner, member = (
        await connect(stack.a, alice.access_token),
        await connect(stack.b, bob.access_token),
    )
    await join(owner, room)
    await join(member, room)
    await receive_type(owner, "member_joined")
    started = time.monotonic()
    await api(stack.a, "DELETE", f"/api/rooms/{room}/members/bob", alice.access_token)
    assert (await receive_type(owner, "member_left"))["user"]["id"] == bob.id
    assert time.monotonic() - started < 2.0
    assert (await _presence(owner, room))["count"] == 1


async def test_who_may_not_join_may_not_see_presence(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    room = "private:plans"
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": room})
    ws = await connect(stack.a, bob.access_token)
    for name in (room, "private:none", "dm:alice,carol"):
        await ws.send_json({"op": "presence", "room": name})
        assert (await receive_type(ws, "error"))["code"] == "forbidden"
        status, body = await api(stack.a, "GET", f"/api/rooms/{name}/presence", bob.access_token)
        assert (status, body["error"]) == (403, "forbidden")
    server = await stack.server_token()
    status, body = await api(stack.a, "GET", f"/api/rooms/{room}/presence", server)
    assert (status, body["count"]) == (200, 0)


async def test_a_namespace_without_presence(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(CHAT_NAMESPACES='{"": {"presence": false}}')
    watcher, ws = await connect(chat, bob.access_token), await connect(chat, alice.access_token)
    await join(watcher, "lobby")
    await join(ws, "lobby")
    await send(ws, "lobby", "marker")
    assert await _frames_until_marker(watcher, "marker") == []  # no member_joined
    await ws.send_json({"op": "presence", "room": "lobby"})
    assert (await receive_type(ws, "error"))["code"] == "presence_disabled"


async def test_a_big_room_is_counted_but_not_narrated(
    stack: Stack, alice: ChatUser, bob: ChatUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence_module, "EVENTS_UP_TO", 2)
    carol = await stack.user("carol", PASSWORD)
    watcher = await connect(stack.a, alice.access_token)
    await join(watcher, "lobby")
    await join(await connect(stack.b, bob.access_token), "lobby")  # the second: narrated
    assert (await receive_type(watcher, "member_joined"))["user"]["id"] == bob.id
    await join(await connect(stack.b, carol.access_token), "lobby")  # the third: not
    await send(watcher, "lobby", "marker")
    assert await _frames_until_marker(watcher, "marker") == []
    assert (await _presence(watcher, "lobby"))["count"] == 3


async def test_count_is_exact_and_the_listing_stops_at_1000(redis_url: str) -> None:
    redis = connect_redis(redis_url, decode=False)
    store = PresenceStore(redis)
    try:
        for first in range(0, 1005, 250):
            await asyncio.gather(
                *(
                    store.enter("crowd", "i1", f"u{n:04d}", f"user{n:04d}", None)
                    for n in range(first, min(1005, first + 250))
                )
            )
        await store.enter("crowd", "i2", "u0000", "user0000", None)  # a second socket
        count, listed = await store.query("crowd")
        assert count == 1005  # users, not sockets
        assert len(listed) == presence_module.MAX_LISTED == 1000
        assert len({p.id for p in listed}) == 1000
    finally:
        await redis.aclose()


async def test_exits_sent_together_answer_each_socket_in_order(redis_url: str) -> None:
    """`exit_all` (a burst of closes whose grace ends together, in one pipeline): each exit
    answers the user's sockets left, or its own error, and the room's count follows."""
    redis = connect_redis(redis_url, decode=False)
    store = PresenceStore(redis)
    try:
        for n in range(3):
            await store.enter("burst", "i1", f"u{n}", f"user{n}", None)
        await store.enter("burst", "i2", "u0", "user0", None)  # u0's second socket
        await redis.set(presence_module.instance_key("broken", "i1"), "not a hash")
        answers = await store.exit_all(
            [
                ("burst", "i1", "u0", "user0", None),
                ("broken", "i1", "u9", "user9", None),
                ("burst", "i1", "u1", "user1", None),
                ("burst", "i1", "u5", "user5", None),  # never entered
            ]
        )
        assert [answers[0], answers[2], answers[3]] == [1, 0, -1]
        assert isinstance(answers[1], Exception)  # that exit's alone
        count, listed = await store.query("burst")
        assert (count, {p.id for p in listed}) == (2, {"u0", "u2"})
    finally:
        await redis.aclose()

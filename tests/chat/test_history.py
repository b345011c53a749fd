"""Rooms that remember (docs/protocol.md, "History and recovery"): offsets, replay with
`since`, exact gaps, resets, idempotent sends, pages of history, and rooms without history."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from service.native.frames import message_parts
from service.rooms.history import RoomHistory, history_key, meta_key
from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import (
    ChatUser,
    Stack,
    across_instances,
    connect,
    join,
    receive,
    receive_type,
    send,
)
from tests.conftest import Store

WS = aiohttp.ClientWebSocketResponse


async def messages(ws: WS, count: int) -> list[dict[str, Any]]:
    return [await receive_type(ws, "message") for _ in range(count)]


async def test_members_on_two_instances_see_one_order_of_contiguous_offsets(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    on_a, on_b = await across_instances(stack, alice, bob, "lobby")
    for n in range(10):  # both instances publish at once
        await asyncio.gather(
            on_a.send_json({"op": "send", "room": "lobby", "text": f"a{n}"}),
            on_b.send_json({"op": "send", "room": "lobby", "text": f"b{n}"}),
        )
    seen_a, seen_b = await messages(on_a, 20), await messages(on_b, 20)
    assert [m["offset"] for m in seen_a] == list(range(1, 21))
    assert [(m["offset"], m["id"]) for m in seen_a] == [(m["offset"], m["id"]) for m in seen_b]
    for ws in (on_a, on_b):
        await ws.close()


async def test_join_with_since_replays_then_goes_live_with_no_duplicate_at_the_boundary(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sender = await connect(stack.a, alice.access_token)
    joined = await join(sender, "lobby")
    for n in range(5):
        await send(sender, "lobby", f"early {n}")
    # A publisher goes on while the late member joins with `since` on the other instance.
    publishing = asyncio.create_task(_publish(sender, "lobby", "during", 30))
    late = await connect(stack.b, bob.access_token)
    again = await join(late, "lobby", since={"offset": 2, "epoch": joined["epoch"]})
    assert again["recovered"] is True
    await publishing
    seen = [m["offset"] for m in await messages(late, 35 - 2)]
    assert seen == list(range(3, 36))  # each once, in order, none missing
    for ws in (sender, late):
        await ws.close()


async def _publish(ws: WS, room: str, prefix: str, count: int) -> None:
    for n in range(count):
        await ws.send_json({"op": "send", "room": room, "text": f"{prefix} {n}"})
        await asyncio.sleep(0)  # interleave with the join being served


async def test_beyond_history_the_gap_is_exact(
    make_chat: ChatFactory, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(CHAT_NAMESPACES='{"": {"history_size": 3}}')
    sender = await connect(chat, alice.access_token)
    joined = await join(sender, "lobby")
    for n in range(10):
        await send(sender, "lobby", f"m{n}")
    late = await connect(chat, bob.access_token)
    again = await join(late, "lobby", since={"offset": 2, "epoch": joined["epoch"]})
    assert (again["recovered"], again["offset"]) == (False, 10)
    assert await receive(late) == {"type": "gap", "room": "lobby", "from": 3, "to": 7}
    assert [m["offset"] for m in await messages(late, 3)] == [8, 9, 10]
    for ws in (sender, late):
        await ws.close()


async def test_a_room_whose_history_was_deleted_resets(
    stack: Stack, alice: ChatUser, bob: ChatUser, store: Store
) -> None:
    sender = await connect(stack.a, alice.access_token)
    joined = await join(sender, "lobby")
    await send(sender, "lobby", "old epoch")
    await sender.close()
    client = store.client()
    await client.delete(meta_key("lobby"), history_key("lobby"))
    await client.aclose()
    sender = await connect(stack.a, alice.access_token)
    fresh = await join(sender, "lobby")  # the room starts a new epoch
    assert fresh["epoch"] != joined["epoch"]
    await send(sender, "lobby", "new epoch")
    back = await connect(stack.b, bob.access_token)
    again = await join(back, "lobby", since={"offset": 1, "epoch": joined["epoch"]})
    assert again["recovered"] is False
    assert await receive(back) == {"type": "gap", "room": "lobby", "reset": True}
    replayed = await receive_type(back, "message")
    assert (replayed["text"], replayed["offset"]) == ("new epoch", 1)
    for ws in (sender, back):
        await ws.close()


async def test_a_repeated_idempotency_key_publishes_nothing_and_acks_the_first(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sender, listener = await across_instances(stack, alice, bob, "lobby")
    frame = {"op": "send", "room": "lobby", "text": "once", "idempotency_key": "k-1"}
    acks = []
    for ref in (1, 2, 3):
        await sender.send_json({**frame, "ref": ref})
        acks.append(await receive_type(sender, "ack"))
    assert {(a["id"], a["offset"]) for a in acks} == {(acks[0]["id"], 1)}
    await send(sender, "lobby", "marker")
    received = await messages(listener, 2)
    assert [m["text"] for m in received] == ["once", "marker"]  # one delivery, then the next
    # The key is per user: the same key from bob is a message of his own.
    await listener.send_json({**frame, "ref": 4})
    assert (await receive_type(listener, "ack"))["offset"] == 3
    for ws in (sender, listener):
        await ws.close()


async def test_history_pages_back_oldest_first(stack: Stack, alice: ChatUser) -> None:
    ws = await connect(stack.a, alice.access_token)
    joined = await join(ws, "lobby")
    for n in range(1, 8):
        await send(ws, "lobby", f"m{n}")
    await ws.send_json({"op": "history", "room": "lobby", "limit": 3, "ref": "h"})
    page = await receive_type(ws, "history")
    assert (page["epoch"], page["ref"]) == (joined["epoch"], "h")
    assert [m["offset"] for m in page["messages"]] == [5, 6, 7]
    await ws.send_json({"op": "history", "room": "lobby", "before": 5, "limit": 100})
    older = await receive_type(ws, "history")
    assert [m["text"] for m in older["messages"]] == ["m1", "m2", "m3", "m4"]
    # Reading needs no membership (who may join may read).
    other = await connect(stack.b, alice.access_token)
    await other.send_json({"op": "history", "room": "lobby", "before": 2})
    assert [m["offset"] for m in (await receive_type(other, "history"))["messages"]] == [1]
    for socket in (ws, other):
        await socket.close()


async def test_a_room_in_no_configured_namespace_is_refused(stack: Stack, alice: ChatUser) -> None:
    ws = await connect(stack.a, alice.access_token)
    for op in ("join", "history"):
        await ws.send_json({"op": op, "room": "nowhere:lobby"})
        assert (await receive_type(ws, "error"))["code"] == "unknown_namespace"
    await ws.close()


async def test_a_room_without_history_behaves_as_before(
    make_chat: ChatFactory, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(CHAT_NAMESPACES='{"": {"history_size": 0}}')
    sender, listener = (
        await connect(chat, alice.access_token),
        await connect(chat, bob.access_token),
    )
    for ws in (sender, listener):
        assert await join(ws, "lobby") == {"type": "joined", "room": "lobby"}
    message_id = await send(sender, "lobby", "at most once")
    received = await receive_type(listener, "message")
    assert (received["id"], "offset" in received) == (message_id, False)
    await listener.send_json({"op": "join", "room": "lobby", "since": {"offset": 1, "epoch": "x"}})
    assert (await receive_type(listener, "joined"))["recovered"] is False
    await listener.send_json({"op": "history", "room": "lobby"})
    assert (await receive_type(listener, "history"))["messages"] == []
    client = aioredis.Redis.from_url(chat.app[NODE].settings.redis_url)
    assert not await client.exists(history_key("lobby"), meta_key("lobby"))  # nothing stored
    await client.aclose()
    for ws in (sender, listener):
        await ws.close()


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        "[]",
        '{"x": {"join": "nobody"}}',
        '{"x": {"history_size": -1}}',
        '{"x": {"history_size": 5, "history_ttl": 0}}',
        '{"x": {"colour": "blue"}}',
        '{"x y": {}}',
    ],
)
def test_a_bad_namespace_configuration_stops_start_up(value: str) -> None:
    from common.config import ConfigError
    from service.settings import load_settings

    with pytest.raises(ConfigError, match="CHAT_NAMESPACES"):
        load_settings({"CHAT_NAMESPACES": value})


async def test_a_storm_of_joins_with_since_costs_one_history_read(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sender = await connect(stack.a, alice.access_token)
    epoch = (await join(sender, "lobby"))["epoch"]
    for n in range(20):
        await send(sender, "lobby", f"m{n}")
    hub = stack.b.app[NODE].hub
    reads = hub.reads
    sockets = [await connect(stack.b, user.access_token) for user in (alice, bob) * 20]
    joined = await asyncio.gather(
        *(
            join(ws, "lobby", since={"offset": n % 20, "epoch": epoch})
            for n, ws in enumerate(sockets)
        )
    )
    assert [j["recovered"] for j in joined] == [True] * len(joined), [
        (n, j) for n, j in enumerate(joined) if not j["recovered"]
    ]
    assert hub.reads == reads + 1  # one read served every join
    for n, ws in enumerate(sockets):
        replayed = await messages(ws, 20 - n % 20)
        assert [m["offset"] for m in replayed] == list(range(n % 20 + 1, 21))
    for ws in (sender, *sockets):
        await ws.close()


async def test_messages_older_than_the_ttl_leave_history(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    history = RoomHistory(client, idempotency_ttl=600)
    sender = {"id": "u1", "username": "alice"}

    async def publish(text: str) -> None:
        frame = message_parts("lobby", text, sender, text, time.time())
        await history.publish("lobby", "chat:room:lobby", frame, message_id=text, size=100, ttl=60)

    try:
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() - 3600)  # an hour ago
        for n in range(3):
            await publish(f"old {n}")
        monkeypatch.setattr(time, "time", real)
        await publish("new")
        assert await client.xlen(history_key("lobby")) == 1  # trimmed as "new" was appended
        tail = await history.tail("lobby", limit=10, ttl=60)
        assert (tail.offset, [s.offset for s in tail.messages]) == (4, [4])
        _, page = await history.before("lobby", before=None, limit=10, ttl=60)
        assert [s.offset for s in page] == [4]
    finally:
        await client.aclose()

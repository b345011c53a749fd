"""The Centrifugo client protocol at /connection/websocket, driven by the real SDK
(centrifuge-python) against two real chat instances, the real auth service and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from centrifuge import Client, ReplyError, StreamPosition

from tests.chat.centrifugo_sdk import SubEvents, address, connected, next_of, subscribed
from tests.chat.helpers import ChatUser, Stack, api, connect, join, receive_type, send
from tests.conftest import Store


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis_url)  # the protocol's behaviour does not depend on the store


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    """SDK clients a test opens, disconnected at its end."""
    opened: list[Client] = []
    yield opened
    for client in opened:
        await client.disconnect()


async def test_publications_cross_instances_with_the_sender_from_the_token(
    stack: Stack, alice: ChatUser, bob: ChatUser, clients: list[Client]
) -> None:
    a, _ = await connected(address(stack.a), alice.access_token)
    b, _ = await connected(address(stack.b), bob.access_token)
    clients += [a, b]
    sub_a, _ = await subscribed(a, "lobby")
    _, events_b = await subscribed(b, "lobby")

    await sub_a.publish({"text": "hello from A"})
    pub = await next_of(events_b.publications)

    data: dict[str, Any] = pub.pub.data
    assert data["text"] == "hello from A"
    assert data["from"] == {"id": alice.id, "username": "alice"}
    assert pub.pub.info.user == alice.id
    assert pub.pub.info.conn_info == {"username": "alice"}
    assert pub.pub.offset == 1


async def test_native_and_centrifugo_sockets_share_a_room(
    stack: Stack, alice: ChatUser, bob: ChatUser, clients: list[Client]
) -> None:
    b, _ = await connected(address(stack.b), bob.access_token)
    clients.append(b)
    sub_b, events_b = await subscribed(b, "lobby")
    ws = await connect(stack.a, alice.access_token)
    await join(ws, "lobby")

    await send(ws, "lobby", "native to SDK")
    assert (await next_of(events_b.publications)).pub.data["text"] == "native to SDK"
    assert (await receive_type(ws, "message"))["text"] == "native to SDK"  # its own echo
    await sub_b.publish({"text": "SDK to native"})
    message = await receive_type(ws, "message")
    assert message["text"] == "SDK to native"
    assert message["from"] == {"id": bob.id, "username": "bob"}
    await ws.close()


async def test_history_forward_reverse_and_since(
    stack: Stack, alice: ChatUser, clients: list[Client]
) -> None:
    a, _ = await connected(address(stack.a), alice.access_token)
    clients.append(a)
    sub, _ = await subscribed(a, "lobby")
    for n in range(1, 6):
        await sub.publish({"text": f"m{n}"})

    oldest = await sub.history(limit=2)
    assert [p.data["text"] for p in oldest.publications] == ["m1", "m2"]
    assert oldest.offset == 5
    assert oldest.epoch
    newest = await sub.history(limit=2, reverse=True)
    assert [p.data["text"] for p in newest.publications] == ["m5", "m4"]
    after = await sub.history(limit=10, since=StreamPosition(offset=3, epoch=oldest.epoch))
    assert [p.offset for p in after.publications] == [4, 5]
    top_only = await sub.history()
    assert top_only.publications == []
    assert top_only.offset == 5
    with pytest.raises(ReplyError) as wrong_epoch:
        await sub.history(limit=10, since=StreamPosition(offset=3, epoch="another"))
    assert wrong_epoch.value.code == 112


async def test_presence_and_presence_stats_across_instances(
    stack: Stack, alice: ChatUser, bob: ChatUser, clients: list[Client]
) -> None:
    a, _ = await connected(address(stack.a), alice.access_token)
    b, _ = await connected(address(stack.b), bob.access_token)
    clients += [a, b]
    sub_a, events_a = await subscribed(a, "lobby", join_leave=True)
    await subscribed(b, "lobby")
    joined = await next_of(events_a.joins)
    assert joined.info.user == bob.id
    assert joined.info.conn_info["username"] == "bob"

    presence = await sub_a.presence()
    assert set(presence.clients) == {alice.id, bob.id}
    assert presence.clients[bob.id].conn_info == {"username": "bob", "connections": 1}
    stats = await sub_a.presence_stats()
    assert (stats.num_users, stats.num_clients) == (2, 2)


async def test_a_private_room_refuses_a_subscription_with_permission_denied(
    stack: Stack, alice: ChatUser, bob: ChatUser, clients: list[Client]
) -> None:
    status, _ = await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": "private:x"})
    assert status == 201
    b, _ = await connected(address(stack.b), bob.access_token)
    clients.append(b)
    events = SubEvents()
    sub = b.new_subscription("private:x", events=events)
    await sub.subscribe()

    unsubscribed = await next_of(events.unsubscribed)
    assert unsubscribed.code == 103  # permission denied, as Centrifugo says it
    with pytest.raises(ReplyError) as refused:
        await b.history("private:x", limit=1)
    assert refused.value.code == 103

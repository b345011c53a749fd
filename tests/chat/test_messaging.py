"""Rooms and fan-out across two instances on one Redis; the protocol's error frames."""

import asyncio

import aiohttp
import pytest

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


async def test_message_through_a_reaches_members_on_b_and_no_one_else(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    carol = await stack.user("carol", "carol password")
    sender = await connect(stack.a, alice.access_token)
    member = await connect(stack.b, bob.access_token)
    outsider = await connect(stack.b, carol.access_token)
    await join(sender, "lobby")
    await join(member, "lobby")
    await join(outsider, "elsewhere")

    message_id = await send(sender, "lobby", "hello from A", ref="r1")
    received = await receive_type(member, "message")
    assert received == {
        "type": "message",
        "room": "lobby",
        "id": message_id,
        "offset": 1,
        "from": {"id": alice.id, "username": "alice"},
        "text": "hello from A",
        "ts": received["ts"],
    }
    assert isinstance(received["ts"], float)
    # The sender, a member too, gets its own message.
    assert (await receive_type(sender, "message"))["id"] == message_id
    # The outsider receives its own room's next message first: nothing from lobby came before.
    await join(member, "elsewhere")
    marker = await send(member, "elsewhere", "marker")
    frame = await receive_type(outsider, "message")  # (presence frames may come between)
    assert frame["id"] == marker
    for ws in (sender, member, outsider):
        await ws.close()


async def test_after_leave_nothing_more_arrives(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sender, listener = await across_instances(stack, alice, bob, "lobby", "barrier")
    await listener.send_json({"op": "leave", "room": "lobby"})
    assert await receive_type(listener, "left") == {"type": "left", "room": "lobby"}

    await send(sender, "lobby", "you should not see this")
    barrier = await send(sender, "barrier", "after")
    # Messages reach an instance in publish order, so the barrier proves lobby's was skipped.
    frame = await receive(listener)
    assert frame["type"] == "message", frame
    assert frame["id"] == barrier
    await sender.close()
    await listener.close()


async def test_sender_identity_comes_from_the_credential(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sender, listener = await across_instances(stack, alice, bob, "lobby")
    await sender.send_json(
        {
            "op": "send",
            "room": "lobby",
            "text": "I am bob",
            "from": {"id": bob.id, "username": "bob"},
            "user": "bob",
        }
    )
    message = await receive_type(listener, "message")
    assert message["from"] == {"id": alice.id, "username": "alice"}
    await sender.close()
    await listener.close()


async def test_one_senders_messages_arrive_in_order(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    sender, listener = await across_instances(stack, alice, bob, "lobby")
    for n in range(50):
        await sender.send_json({"op": "send", "room": "lobby", "text": str(n)})
    texts = [(await receive_type(listener, "message"))["text"] for _ in range(50)]
    assert texts == [str(n) for n in range(50)]
    await sender.close()
    await listener.close()


async def test_message_ids_are_unique_across_instances(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    first = await connect(stack.a, alice.access_token)
    second = await connect(stack.b, bob.access_token)
    await join(first, "lobby")
    await join(second, "lobby")
    ids = [await send(first, "lobby", "a") for _ in range(5)]
    ids += [await send(second, "lobby", "b") for _ in range(5)]
    assert len(set(ids)) == 10
    await first.close()
    await second.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2, 3]", "bad_frame"),
        ('{"op": "dance"}', "unknown_op"),
        ('{"nop": 1}', "unknown_op"),
        ('{"op": "send", "room": "never-joined", "text": "hi"}', "not_joined"),
        ('{"op": "leave", "room": "never-joined"}', "not_joined"),
        ('{"op": "join", "room": "bad room!"}', "bad_room"),
        ('{"op": "join", "room": ""}', "bad_room"),
        ('{"op": "join", "room": "lobby\\n"}', "bad_room"),
        ('{"op": "join", "room": "' + "r" * 129 + '"}', "bad_room"),
        ('{"op": "join"}', "bad_room"),
        ('{"op": "send", "room": "lobby", "text": 42}', "bad_text"),
        ('{"op": "send", "room": "lobby", "text": ""}', "bad_text"),
        ('{"op": "send", "room": "lobby", "text": "' + "x" * 4097 + '"}', "too_long"),
        ('{"op": "ping", "ref": {"nested": true}}', "bad_ref"),
        ('{"op": "refresh"}', "bad_token"),
        ("[" * 10000 + "]" * 10000, "bad_json"),
        ('{"op": "ping", "ref": ' + "9" * 5000 + "}", "bad_json"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_keeps_working(
    stack: Stack, alice: ChatUser, frame: str, code: str
) -> None:
    ws = await connect(stack.a, alice.access_token)
    await join(ws, "lobby")
    await ws.send_str(frame)
    error = await receive(ws)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["message"]
    await ws.send_json({"op": "ping"})
    assert await receive(ws) == {"type": "pong"}
    await ws.close()


async def test_error_frames_echo_the_ref(stack: Stack, alice: ChatUser) -> None:
    ws = await connect(stack.a, alice.access_token)
    await ws.send_json({"op": "send", "room": "lobby", "text": "hi", "ref": "abc"})
    assert (await receive(ws))["ref"] == "abc"
    await ws.close()


async def test_binary_frame_gets_an_error(stack: Stack, alice: ChatUser) -> None:
    ws = await connect(stack.a, alice.access_token)
    await ws.send_bytes(b"\x00\x01")
    assert (await receive(ws))["code"] == "binary_unsupported"
    await ws.close()


async def test_oversized_frame_closes_with_1009(stack: Stack, alice: ChatUser) -> None:
    ws = await connect(stack.a, alice.access_token)
    await ws.send_str("x" * (64 * 1024 + 1))
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == 1009


async def test_rooms_per_connection_are_bounded(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_MAX_ROOMS="2")
    ws = await connect(chat, alice.access_token)
    await join(ws, "one")
    await join(ws, "two")
    await ws.send_json({"op": "join", "room": "three"})
    assert (await receive(ws))["code"] == "too_many_rooms"
    await join(ws, "two")  # joining a room already joined is not a new room
    await ws.close()


async def test_rate_limit_sends_errors_then_closes_1008(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_RATE_PER_SECOND="1", CHAT_RATE_BURST="3", CHAT_RATE_STRIKES="3")
    ws = await connect(chat, alice.access_token)
    for _ in range(8):
        await ws.send_json({"op": "ping"})
    frames = []
    async with asyncio.timeout(5):
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            frames.append(message.json())
    assert frames[:3] == [{"type": "pong"}] * 3
    assert {"type": "error", "code": "rate_limited", "message": "slow down"} in frames
    assert ws.close_code == 1008


async def test_subscription_follows_local_membership(
    stack: Stack, alice: ChatUser, bob: ChatUser, store: Store
) -> None:
    channel = stack.a.app[NODE].broker.channel("lobby")

    async def subscribers() -> int:
        return await store.subscribers(channel)

    first = await connect(stack.a, alice.access_token)
    second = await connect(stack.a, bob.access_token)
    assert await subscribers() == 0
    await join(first, "lobby")
    await join(second, "lobby")
    assert await subscribers() == 1  # one subscription per process, not per member
    await first.send_json({"op": "leave", "room": "lobby"})
    await receive_type(first, "left")
    assert await subscribers() == 1
    await second.send_json({"op": "leave", "room": "lobby"})
    await receive_type(second, "left")
    assert await subscribers() == 0  # "left" is sent once Redis confirmed the unsubscribe
    for ws in (first, second):
        await ws.close()


async def test_disconnecting_releases_the_subscription(
    stack: Stack, alice: ChatUser, store: Store
) -> None:
    node = stack.a.app[NODE]
    ws = await connect(stack.a, alice.access_token)
    await join(ws, "lobby")
    (connection,) = node.sockets
    await ws.close()
    await asyncio.wait_for(connection.finished.wait(), 5)
    assert "lobby" not in set(node.hub.rooms())
    assert await store.subscribers(node.broker.channel("lobby")) == 0


async def test_direct_answers_echo_the_ref(stack: Stack, alice: ChatUser) -> None:
    ws = await connect(stack.a, alice.access_token)
    await ws.send_json({"op": "join", "room": "lobby", "ref": "j"})
    joined = await receive(ws)
    assert joined == {
        "type": "joined", "room": "lobby", "epoch": joined["epoch"], "offset": 0, "ref": "j"
    }  # fmt: skip
    await ws.send_json({"op": "ping", "ref": 7})
    assert await receive(ws) == {"type": "pong", "ref": 7}
    await ws.send_json({"op": "leave", "room": "lobby", "ref": "l"})
    assert await receive(ws) == {"type": "left", "room": "lobby", "ref": "l"}
    await ws.close()

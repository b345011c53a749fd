"""Slow consumers, shutdown, health and readiness."""

import asyncio
import socket

import aiohttp

from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Stack, connect, join, receive_type, stalled_member
from tests.chat.rawws import open_raw, read_until_eof, text_frame


async def test_a_client_that_never_reads_is_closed_while_others_keep_receiving(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(
        CHAT_OUTBOX_FRAMES="16", CHAT_RATE_PER_SECOND="100000", CHAT_RATE_BURST="100000"
    )
    carol = await stack.user("carol", "carol password")
    sender = await connect(chat, alice.access_token)
    reader_ws = await connect(chat, bob.access_token)
    await join(sender, "lobby")
    epoch = (await join(reader_ws, "lobby"))["epoch"]

    host, port = chat.server.host, chat.server.port
    assert isinstance(port, int)
    slow_reader, slow_writer = await open_raw(
        host, port, {"Authorization": f"Bearer {carol.access_token}"}
    )
    slow_writer.write(text_frame({"op": "join", "room": "lobby"}))
    await slow_reader.readuntil(b'"joined"')
    node = chat.app[NODE]
    assert len(node.hub.members("lobby")) == 3
    closed = list(node.sockets)  # kept: the registry forgets a connection once it is gone
    # Kernel send buffers autotune up to megabytes; pin this one small so the test exercises
    # our outbox bound rather than the machine's TCP settings.
    (slow_connection,) = [c for c in closed if c.identity.username == "carol"]
    server_socket = slow_connection._transport.get_extra_info("socket")
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    # From here on the raw client reads nothing at all.

    count = 400
    text = "y" * 4000
    received = 0

    async def read_all() -> None:
        nonlocal received
        while received < count:
            frame = await receive_type(reader_ws, "message")
            assert frame["text"] == text
            received += 1

    reading = asyncio.create_task(read_all())
    for _ in range(count):
        await sender.send_json({"op": "send", "room": "lobby", "text": text})
        await receive_type(sender, "ack")
    await asyncio.wait_for(reading, 30)
    assert received == count

    # The slow member was closed as a slow consumer, and its socket dropped: reading now
    # yields only what was in flight, then EOF.
    slow = slow_connection
    assert slow.close_code == 1013
    leftover = await asyncio.wait_for(read_until_eof(slow_reader), 10)
    assert len(leftover) < count * len(text) // 2  # cut off, not fed everything
    slow_writer.close()
    await asyncio.wait_for(slow.finished.wait(), 5)
    assert len(node.hub.members("lobby")) == 2
    # It comes back, joins where it was (nothing read since offset 0), and loses nothing.
    resumed = await connect(chat, carol.access_token)
    again = await join(resumed, "lobby", since={"offset": 0, "epoch": epoch})
    assert again["recovered"] is True
    replayed = [await receive_type(resumed, "message") for _ in range(count)]
    assert [m["offset"] for m in replayed] == list(range(1, count + 1))
    for ws in (sender, reader_ws, resumed):
        await ws.close()


async def test_shutdown_sends_1001(make_chat: ChatFactory, alice: ChatUser) -> None:
    chat = await make_chat()
    ws = await connect(chat, alice.access_token)
    closing = asyncio.create_task(chat.server.close())
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == 1001
    await closing


async def test_health_and_readiness(stack: Stack) -> None:
    assert (await stack.a.get("/healthz")).status == 200
    ready = await stack.a.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready", "redis": True, "auth": True}


async def test_not_ready_without_the_auth_service(make_chat: ChatFactory) -> None:
    from tests.redis_server import free_port

    chat = await make_chat(AUTH_URL=f"http://127.0.0.1:{free_port()}")
    ready = await chat.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["auth"] is False


async def test_a_stalled_reader_is_closed_after_the_write_timeout(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    # The frame bound is out of reach here: only the write timeout can close the reader.
    chat = await make_chat(
        CHAT_OUTBOX_FRAMES="1000000",
        CHAT_WRITE_TIMEOUT="0.5",
        CHAT_SOCKET_SNDBUF="4096",
        CHAT_RATE_PER_SECOND="100000",
        CHAT_RATE_BURST="100000",
    )
    sender = await connect(chat, alice.access_token)
    await join(sender, "lobby")
    slow, slow_reader, slow_writer = await stalled_member(chat, bob.access_token, "lobby")
    text = "z" * 4000
    async with asyncio.timeout(10):
        while slow.close_code is None:  # until the server gives up on the stalled reader
            await sender.send_json({"op": "send", "room": "lobby", "text": text})
            await receive_type(sender, "ack")
            await receive_type(sender, "message")
    assert slow.close_code == 1013
    await asyncio.wait_for(read_until_eof(slow_reader), 10)
    slow_writer.close()
    await sender.close()

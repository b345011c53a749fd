"""A socket's frames of one loop turn go out together, in one write (`service/outgoing.py`):
in the order they were sent, whatever their kind, before a close, and never past the outbox
bound. The frames are sent from the test itself, on the server's own loop, in one turn: what
a fan-out of several messages from one Redis read does."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import aiohttp
import pytest
from aiohttp.http_websocket import WebSocketWriter

from service.connection import WRITE_BUFFER_HIGH
from service.errors import GOING_AWAY
from service.native import frames
from service.outgoing import text_frame
from service.rooms.messages import RoomMessage
from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Client, closed_with, connect, join, receive, stalled_member
from tests.chat.rawws import open_raw, read_until_eof
from tests.chat.rawws import text_frame as client_frame


def server_side(chat: Client, before: set[Any]) -> Any:
    (connection,) = set(chat.app[NODE].sockets) - before
    return connection


async def connected(chat: Client, token: str) -> tuple[aiohttp.ClientWebSocketResponse, Any]:
    before = set(chat.app[NODE].sockets)
    ws = await connect(chat, token)
    return ws, server_side(chat, before)


def counting_writes(connection: Any) -> list[int]:
    """The sizes of the writes to the server side's transport from here on."""
    transport = connection._transport
    sizes: list[int] = []
    write = transport.write

    def counted(data: bytes) -> None:
        sizes.append(len(data))
        write(data)

    transport.write = counted
    return sizes


async def test_one_turns_frames_of_every_kind_arrive_in_order_in_one_write(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat()
    ws, connection = await connected(chat, alice.access_token)
    await join(ws, "lobby")
    writes = counting_writes(connection)
    live = [RoomMessage("lobby", None, None, frames.encode({"type": "message", "n": n}))
            for n in range(30)]  # fmt: skip
    # One turn: live messages, a replay, a gap, a removal, an error, more live ones.
    for message in live[:10]:
        connection.deliver(message)
    connection.replay(live[10:20])
    connection.gap("lobby", 3, 4, reset=False)
    connection.removed("lobby")
    connection.send(frames.error("rate_limited", "slow down"))
    for message in live[20:]:
        connection.deliver(message)
    expected = [json.loads(m.frame) for m in live[:20]]
    expected += [{"type": "gap"}, {"type": "removed"}, {"type": "error"}]
    expected += [json.loads(m.frame) for m in live[20:]]
    got = [await receive(ws) for _ in expected]
    assert [frame["type"] for frame in got] == [frame["type"] for frame in expected]
    assert [f.get("n") for f in got] == [f.get("n") for f in expected]
    assert len(writes) == 1
    await ws.close()


async def test_frames_held_in_a_turn_go_out_before_the_close(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat()
    ws, connection = await connected(chat, alice.access_token)
    for n in range(20):
        connection.send(frames.encode({"type": "message", "n": n}))
    connection.close_soon(GOING_AWAY)
    assert [(await receive(ws))["n"] for _ in range(20)] == list(range(20))
    assert await closed_with(ws) == GOING_AWAY.code


async def test_a_reply_goes_out_before_the_answer_to_a_close_that_came_with_it(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat()
    port = chat.server.port
    assert isinstance(port, int)
    auth = {"Authorization": f"Bearer {alice.access_token}"}
    reader, writer = await open_raw(chat.server.host, port, auth)
    await reader.readuntil(b'"hello"')
    # One write: the server reads both frames at once, answers the first (an error) and
    # then, within aiohttp's receive, the close.
    mask = b"\x01\x02\x03\x04"
    code = bytes(b ^ mask[i] for i, b in enumerate(struct.pack("!H", 1000)))
    writer.write(client_frame({"op": "nonsense"}) + b"\x88\x82" + mask + code)
    rest = await asyncio.wait_for(read_until_eof(reader), 10)
    error_at = rest.find(b'"error"')
    assert error_at >= 0, rest
    assert rest.rfind(b"\x88\x02\x03\xe8") > error_at  # the close answer came after it
    writer.close()


async def test_a_burst_past_the_buffer_keeps_its_order_through_the_backlog(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_OUTBOX_FRAMES="1000", CHAT_SOCKET_SNDBUF="4096")
    ws, connection = await connected(chat, alice.access_token)
    text = "x" * 4000
    count = 300  # about 1.2 MB in one turn: some held, then the backlog
    for n in range(count):
        connection.send(frames.encode({"type": "message", "n": n, "text": text}))
    assert connection._backlog  # the burst went past the buffer: the backlog took the rest
    got = [(await receive(ws))["n"] for _ in range(count)]
    assert got == list(range(count))
    assert connection.close_code is None
    await ws.close()


async def test_a_burst_to_a_stalled_reader_is_held_to_the_outbox_bound(
    make_chat: ChatFactory, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(CHAT_OUTBOX_FRAMES="16", CHAT_SOCKET_SNDBUF="4096")
    sender = await connect(chat, alice.access_token)
    await join(sender, "lobby")
    slow, slow_reader, slow_writer = await stalled_member(chat, bob.access_token, "lobby")
    frame = frames.encode({"type": "message", "text": "y" * 4000})
    for _ in range(200):  # one turn, 800 KB: far past the buffer and the outbox
        slow.send(frame)
    # What reached the transport stopped at the high-water mark (give or take one frame):
    # frames held for one write count against it as if written.
    assert slow._transport.get_write_buffer_size() <= WRITE_BUFFER_HIGH + len(frame) + 4
    await asyncio.wait_for(slow.wait_closed(), 10)
    assert slow.close_code == 1013
    leftover = await asyncio.wait_for(read_until_eof(slow_reader), 10)
    assert len(leftover) < 200 * len(frame) // 2
    slow_writer.close()
    await sender.close()


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_frame_is_encoded_as_aiohttps_writer_encodes_it(length: int) -> None:
    written: list[bytes] = []

    class Transport:
        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            written.append(bytes(data))

    writer = WebSocketWriter(None, Transport())  # type: ignore[arg-type]
    payload = b"a" * length
    writer._write_websocket_frame(payload, aiohttp.WSMsgType.TEXT, 0)
    assert text_frame(payload) == b"".join(written)
    other = b"b" * length  # same length, another payload: not the one encoded last
    assert text_frame(other) == text_frame(payload)[: -length or None] + other

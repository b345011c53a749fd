"""Every frame counts against a socket's rate (finding 4 of the attack on 326b726): floods of
pings or of empty continuation frames, which never become messages, are closed with 1008
after the same budget as a flood of messages, and do not slow anybody else down."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.chat.helpers import ChatUser, Stack, connect, receive_type

PING, PONG, TEXT, CONTINUATION, CLOSE = 0x9, 0xA, 0x1, 0x0, 0x8
FLOOD = 20_000
# Default CHAT_RATE_BURST (100) + CHAT_RATE_STRIKES (20), and room for timer granularity.
MOST_ANSWERED = 200

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A client frame (masked, as RFC 6455 requires)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | len(payload)) + mask + masked


async def read_frame(reader: Reader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(size)


@asynccontextmanager
async def raw_socket(stack: Stack, user: ChatUser) -> AsyncIterator[tuple[Reader, Writer]]:
    """An upgraded /ws connection on instance A, past its hello frame."""
    reader, writer = await asyncio.open_connection(stack.a.server.host, stack.a.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {user.access_token}\r\n\r\n"
        ).encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
        assert opcode == TEXT
        assert json.loads(payload)["type"] == "hello"
        yield reader, writer
    finally:
        writer.close()


async def answers_until_closed(reader: Reader) -> tuple[int, int]:
    """(pongs received, close code) once the server closes, within 10 s."""
    pongs = 0
    async with asyncio.timeout(10):
        while True:
            try:
                opcode, payload = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return pongs, 1006
            if opcode == PONG:
                pongs += 1
            elif opcode == CLOSE:
                return pongs, struct.unpack("!H", payload[:2])[0]


async def bystander_is_served(stack: Stack, user: ChatUser) -> None:
    ws = await connect(stack.a, user.access_token)
    await ws.send_json({"op": "ping"})
    await asyncio.wait_for(receive_type(ws, "pong"), 1)
    await ws.close()


async def test_a_ping_flood_is_closed_with_1008(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    async with raw_socket(stack, alice) as (reader, writer):
        writer.write(frame(PING) * FLOOD)
        pongs, code = await answers_until_closed(reader)
    assert code == 1008
    assert pongs <= MOST_ANSWERED
    await bystander_is_served(stack, bob)


async def test_a_flood_of_empty_continuation_frames_is_closed_with_1008(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    async with raw_socket(stack, alice) as (reader, writer):
        writer.write(frame(TEXT, b"{", fin=False) + frame(CONTINUATION, fin=False) * FLOOD)
        _, code = await answers_until_closed(reader)
    assert code == 1008
    await bystander_is_served(stack, bob)


async def test_pings_trickled_at_a_fair_rate_are_answered(stack: Stack, alice: ChatUser) -> None:
    async with raw_socket(stack, alice) as (reader, writer):
        for n in range(50):  # half the burst: within every budget
            writer.write(frame(PING, str(n).encode()))
            opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
            assert (opcode, payload) == (PONG, str(n).encode())


async def test_a_fragmented_message_is_still_one_message(stack: Stack, alice: ChatUser) -> None:
    async with raw_socket(stack, alice) as (reader, writer):
        writer.write(
            frame(TEXT, b'{"op":', fin=False)
            + frame(CONTINUATION, b'"ping",', fin=False)
            + frame(CONTINUATION, b'"ref":7}')
        )
        opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
    assert opcode == TEXT
    assert json.loads(payload) == {"type": "pong", "ref": 7}

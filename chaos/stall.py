"""A reader that stops reading, for real: a bare WebSocket client on a socket with a tiny
receive window that, once joined, reads nothing until the server drops it (aiohttp's client
keeps reading into memory whatever its caller does, so it cannot stall a socket)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

RCVBUF = 4096
ESTABLISHED = 1  # tcpi_state in struct tcp_info (Linux)
POLL = 0.2  # seconds between looks at the socket's state while stalled
DRAIN_TIMEOUT = 2.0


def _masked(payload: bytes, opcode: int = 0x1) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    return head + mask + body


def parse_frames(data: bytes) -> list[dict[str, Any]]:
    """The complete text frames (JSON) in what a server sent; a close frame as
    {"type": "close", "code": N}. A frame cut short by the drop is ignored."""
    frames: list[dict[str, Any]] = []
    at = 0
    while at + 2 <= len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if size == 126:
            (size,) = struct.unpack_from("!H", data, at)
            at += 2
        elif size == 127:
            (size,) = struct.unpack_from("!Q", data, at)
            at += 8
        if at + size > len(data):
            break
        payload = data[at : at + size]
        at += size
        if opcode == 0x1:
            frames.append(json.loads(payload))
        elif opcode == 0x8 and size >= 2:
            frames.append({"type": "close", "code": struct.unpack_from("!H", payload)[0]})
    return frames


async def stall(
    url: str, token: str, join: dict[str, Any], give_up: float
) -> tuple[list[dict[str, Any]], float | None]:
    """Connects, sends `join`, then reads nothing until the server drops the connection or
    `give_up` seconds pass. Returns the frames found buffered afterwards and how long the
    server took to drop it (None: it did not)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)  # before connect: tiny window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=RCVBUF)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    try:
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            return [], None
        writer.write(_masked(json.dumps(join).encode()))
        started = time.monotonic()
        dropped: float | None = None
        while time.monotonic() - started < give_up:
            sock_info = writer.get_extra_info("socket")
            if sock_info.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != ESTABLISHED:
                dropped = time.monotonic() - started
                break
            await asyncio.sleep(POLL)  # the fault: not reading; only watching the socket
        return parse_frames(await _rest(reader)), dropped
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return [], None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _rest(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    return b"".join(chunks)

"""A bare WebSocket client over a socket whose receive buffer we control: it can stop
reading entirely, which aiohttp's client never does (it keeps buffering)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct


async def open_raw(
    host: str, port: int, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a tiny window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = await reader.readuntil(b"\r\n\r\n")
    if not response.startswith(b"HTTP/1.1 101"):
        raise AssertionError(response.decode(errors="replace"))
    return reader, writer


def text_frame(payload: dict[str, object]) -> bytes:
    data = json.dumps(payload).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert len(data) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(data)) + mask + masked


async def read_until_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still sends, until it closes or drops the connection."""
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)

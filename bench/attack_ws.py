"""The attacker's raw WebSocket: made-up bearer values, bare handshakes, hand-built frames.

The attacks need what a WebSocket library will not do: send control frames and fragments
back to back as fast as the socket takes them, or open a handshake and read no more than its
status line. So the upgrade is written by hand, client frames are built here (masked, as
RFC 6455 requires of a client) and the server's frames are parsed here (unmasked).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections import Counter

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample nonce; the server only echoes its hash
TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0
OPCODE_NAMES = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping",
                0xA: "pong"}  # fmt: skip


def random_bearer() -> str:
    """Three base64url segments of random bytes: shaped like a JWT, signed by nobody."""
    parts = (os.urandom(size) for size in (30, 60, 64))
    return ".".join(base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in parts)


def upgrade_request(port: int, bearer: str) -> bytes:
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n"
        f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n"
        f"Authorization: Bearer {bearer}\r\n\r\n"
    ).encode()


async def handshake_status(port: int, bearer: str, within: float = 10.0) -> str:
    """Sends an upgrade with `bearer` and reads only the status line: its code, "timeout" or
    the error. The connection is then closed, whatever the answer."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(upgrade_request(port, bearer))
            line = await reader.readline()
        parts = line.split(b" ", 2)
        return parts[1].decode() if len(parts) >= 2 else "no answer"
    except TimeoutError:
        return "timeout"
    except OSError as error:
        return type(error).__name__
    finally:
        if writer is not None:
            await close_writer(writer)


async def close_writer(writer: asyncio.StreamWriter, within: float = 2.0) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), within)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One masked client frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = bytes([(0x80 if fin else 0) | opcode, 0x80 | length])
    elif length < 1 << 16:
        head = bytes([(0x80 if fin else 0) | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([(0x80 if fin else 0) | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + mask + masked


class FrameParser:
    """Splits the server's byte stream into (opcode, payload) frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames, at, buffer = [], 0, self._buffer
        while len(buffer) - at >= 2:
            opcode, length, head = buffer[at] & 0x0F, buffer[at + 1] & 0x7F, 2
            if length == 126:
                if len(buffer) - at < 4:
                    break
                length, head = int.from_bytes(buffer[at + 2 : at + 4], "big"), 4
            elif length == 127:
                if len(buffer) - at < 10:
                    break
                length, head = int.from_bytes(buffer[at + 2 : at + 10], "big"), 10
            mask = buffer[at + head : at + head + 4] if buffer[at + 1] & 0x80 else b""
            start = at + head + len(mask)
            if len(buffer) < start + length:
                break
            payload = bytes(buffer[start : start + length])
            if mask:
                payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
            frames.append((opcode, payload))
            at = start + length
        del buffer[:at]
        return frames


class RawWebSocket:
    """An upgraded connection whose frames the caller writes; `pump()` reads the server's,
    counting them by opcode and keeping the close code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._parser = FrameParser()
        self.counts: Counter[str] = Counter()
        self.close_code: int | None = None
        self.ended = asyncio.Event()  # the server sent a close frame or ended the connection
        self.ended_at: float | None = None
        self.how_ended = ""
        self.last_frame_at = time.monotonic()

    @classmethod
    async def open(cls, port: int, token: str, within: float = 10.0) -> RawWebSocket:
        """Upgrades with `token` and reads up to the server's first text frame (`hello`)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), within)
        ws = cls(reader, writer)
        try:
            async with asyncio.timeout(within):
                writer.write(upgrade_request(port, token))
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 101"):
                    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
                    raise ConnectionError(f"upgrade refused: {status}")
                while not ws.counts["text"]:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("closed before hello")
                    ws._take(data)
        except BaseException:
            await close_writer(writer)
            raise
        return ws

    def _take(self, data: bytes) -> None:
        self.last_frame_at = time.monotonic()
        for opcode, payload in self._parser.feed(data):
            self.counts[OPCODE_NAMES.get(opcode, hex(opcode))] += 1
            if opcode == CLOSE and self.close_code is None:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._end("close frame")

    def _end(self, how: str) -> None:
        if not self.ended.is_set():
            self.ended_at, self.how_ended = time.monotonic(), how
            self.ended.set()

    async def pump(self) -> None:
        """Reads until the server ends the connection."""
        try:
            while data := await self._reader.read(65536):
                self._take(data)
            self._end("end of stream")
        except OSError as error:
            self._end(type(error).__name__)

    async def send(self, data: bytes) -> bool:
        """Writes `data` once the socket takes it; False when the connection is gone."""
        if self.ended.is_set() or self._writer.is_closing():
            return False
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError:
            return False
        return True

    async def aclose(self) -> None:
        await close_writer(self._writer)

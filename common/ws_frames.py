"""Seeing every WebSocket frame a client sends, not only the messages they add up to.

aiohttp answers pings itself and assembles fragments before the application sees a message,
so a per-message rate limit never sees a flood of pings or of empty continuation frames.
`FrameMeter` sits in front of aiohttp's frame reader, reads each frame's header as the bytes
arrive (skipping payloads without looking at them) and reports the frames the message loop
will never see: pings and pongs, and fragments that do not complete a message. The frame that
completes a message is left to the message loop, so every frame is counted exactly once (a
close frame never: it ends the socket anyway, and must not be dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

FrameListener = Callable[[], bool]  # called per counted frame; False: stop reading this socket

_FIN = 0x80
_MASKED = 0x80
_MESSAGE_OPCODES = (0x0, 0x1, 0x2)  # continuation, text, binary
_CLOSE = 0x8


class FrameReader(Protocol):
    """aiohttp's WebSocket reader as the HTTP protocol feeds it."""

    def feed_data(self, data: Any) -> tuple[bool, bytes]: ...

    def feed_eof(self) -> None: ...


class FrameMeter:
    """Wraps a `FrameReader`; counts frames until a listener is attached, then reports them.

    Once the listener answers False the socket is being closed for abuse: further bytes are
    dropped unread, so a flood costs no more parsing.
    """

    __slots__ = ("_head", "_reader", "_skip", "_unclaimed", "blocked", "listener")

    def __init__(self, reader: FrameReader) -> None:
        self._reader = reader
        self._head = b""  # the start of a frame header split across reads
        self._skip = 0  # payload bytes of the current frame still to come
        self._unclaimed = 0  # counted before a listener was attached
        self.listener: FrameListener | None = None
        self.blocked = False

    def attach(self, listener: FrameListener) -> None:
        """Reports to `listener` from now on, starting with the frames counted so far."""
        self.listener = listener
        while self._unclaimed and not self.blocked:
            self._unclaimed -= 1
            self.blocked = not listener()

    def feed_data(self, data: Any) -> tuple[bool, bytes]:
        if self.blocked:
            return False, b""
        self._scan(bytes(data))
        if self.blocked:
            return False, b""
        return self._reader.feed_data(data)

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    def _counted(self) -> None:
        if self.listener is None:
            self._unclaimed += 1
        elif not self.listener():
            self.blocked = True

    def _scan(self, data: bytes) -> None:
        pos, end = 0, len(data)
        if self._skip:
            pos = min(self._skip, end)
            self._skip -= pos
        if self._head:
            data, pos, end = self._head + data[pos:], 0, len(self._head) + end - pos
            self._head = b""
        while pos < end and not self.blocked:
            if end - pos < 2:
                self._head = data[pos:]
                return
            first, second = data[pos], data[pos + 1]
            size = second & 0x7F
            header = 2 + (4 if second & _MASKED else 0) + (2 if size == 126 else 0)
            header += 8 if size == 127 else 0
            if end - pos < header:
                self._head = data[pos:]
                return
            if size == 126:
                size = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif size == 127:
                size = int.from_bytes(data[pos + 2 : pos + 10], "big")
            opcode = first & 0x0F
            # A close frame ends the socket whatever the budget: it must reach aiohttp.
            if opcode != _CLOSE and not ((first & _FIN) and opcode in _MESSAGE_OPCODES):
                self._counted()
            pos += header + size
        if pos > end:
            self._skip = pos - end

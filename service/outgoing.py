"""Frames on their way out: encoded once per message, written once per socket per loop turn.

A room hands one message to every member in one go, and one read from Redis often carries
several messages. Built frame by frame, that is a WebSocket header and a `send()` system
call per frame per socket. Here instead:

- `text_frame` encodes a payload as a complete server text frame (RFC 6455, section 5.2:
  final, unmasked, uncompressed) and keeps the last one: every recipient of a message is
  handed the same payload object, so it is encoded once, not once per socket;
- a socket holds the frames it was given during one turn of the event loop and a
  `WriteBatch` writes them with one `transport.write` each, from a single callback queued
  behind everything already ready in this turn (see `service/connection.py` for the bound).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Protocol

log = logging.getLogger(__name__)

_FIN_TEXT = 0x81  # FIN, no RSV bits (no compression), opcode 1 (text)
_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack


class _Last:
    """The last payload encoded, held (so its identity cannot be reused), with its frame, as
    one pair (replaced in one step)."""

    pair: tuple[bytes | None, bytes] = (None, b"")


def text_frame(payload: bytes) -> bytes:
    """`payload` (UTF-8 text) as one complete WebSocket text frame, as a server sends it."""
    last, frame = _Last.pair
    if payload is last:
        return frame
    length = len(payload)
    if length < 126:
        header = _SHORT(_FIN_TEXT, length)
    elif length < 65536:
        header = _MEDIUM(_FIN_TEXT, 126, length)
    else:
        header = _LONG(_FIN_TEXT, 127, length)
    frame = header + payload
    _Last.pair = (payload, frame)
    return frame


class HoldsFrames(Protocol):
    def write_pending(self) -> None:
        """Writes the frames held since the last call (must not raise)."""


class WriteBatch:
    """The sockets holding frames in this turn of the event loop. The first one added queues
    one callback (`call_soon`: after everything ready now, so after the rest of the fan-out)
    that writes each socket's frames; a socket adds itself once per turn, at its first frame.
    One per chat process (`ChatNode.writes`)."""

    __slots__ = ("_holding", "_queued")

    def __init__(self) -> None:
        self._holding: list[HoldsFrames] = []
        self._queued = False

    def add(self, socket: HoldsFrames) -> None:
        self._holding.append(socket)
        if not self._queued:
            self._queued = True
            asyncio.get_running_loop().call_soon(self._write)

    def _write(self) -> None:
        holding, self._holding = self._holding, []
        self._queued = False
        for socket in holding:
            try:
                socket.write_pending()
            except Exception:  # one socket's fault must not leave the others' frames held
                log.exception("writing a socket's frames failed")

"""Admission of TCP connections: at most so many per process, and so many per address.

A connection past a cap is answered at once with a fixed HTTP response (503 past the
process's cap, 429 past its address's) and closed, without its request being read and
without anything of aiohttp's being made for it. It is half-closed after the answer and
fully closed once the client hangs up or `LINGER` seconds pass: closing with its request
unread would reset the connection and could discard the answer before the client read it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from common.log_throttle import ConditionLog

log = logging.getLogger(__name__)

LINGER = 1.0  # seconds a refused connection may take to read its answer and hang up
# Refused connections lingering at once, at most: under a flood, each would hold a descriptor
# for LINGER seconds, so past this many they are closed at once (their answer may be lost).
MAX_LINGERING = 128


# Consulted first for each new connection, with the client's address: the answer that
# refuses it at once (see `answer`), or None. An application registers one under
# `CONNECTION_SCREEN` while it starts (the chat service: addresses whose handshakes keep
# failing), so that what it refuses anyway costs no request parsing.
Screen = Callable[[str], bytes | None]
CONNECTION_SCREEN: web.AppKey[Screen] = web.AppKey("connection_screen")


def answer(status: str, description: str, *, retry_after: int = 1) -> bytes:
    """A complete HTTP response refusing a connection (503 or 429, JSON error body)."""
    error = "temporarily_unavailable" if status.startswith("503") else "too_many_requests"
    body = f'{{"error":"{error}","error_description":"{description}"}}'.encode()
    return (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        "Cache-Control: no-store\r\n"
        f"Retry-After: {retry_after}\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


OVER_CAP = answer("503 Service Unavailable", "too many open connections; retry shortly")
OVER_ADDRESS_CAP = answer(
    "429 Too Many Requests", "too many open connections from this address; retry shortly"
)


class ConnectionGate:
    """Counts one process's open connections, in all and per client address."""

    def __init__(self, limit: int, per_address: int, screen: Screen | None = None) -> None:
        self.limit = limit
        self.per_address = per_address
        self.screen = screen
        self.open = 0
        self.lingering = 0
        self._by_address: Counter[str] = Counter()
        self._full = ConditionLog(log, "connection cap reached; new connections answered 503")
        self._crowded = ConditionLog(
            log, "an address reached its connection cap; its new connections answered 429"
        )

    def factory(self, make_handler: Callable[[], asyncio.Protocol]) -> Callable[[], GatedProtocol]:
        return lambda: GatedProtocol(self, make_handler)

    def admit(self, address: str) -> bytes | None:
        """Takes a slot for a connection from `address`, or returns the answer refusing it."""
        if self.screen is not None:
            refusal = self.screen(address)
            if refusal is not None:
                return refusal
        if self.open >= self.limit:
            self._full.hit(open=self.open, limit=self.limit)
            return OVER_CAP
        if self._by_address[address] >= self.per_address:
            self._crowded.hit(remote=address, limit=self.per_address)
            return OVER_ADDRESS_CAP
        self.open += 1
        self._by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.open -= 1
        self._by_address[address] -= 1
        if not self._by_address[address]:
            del self._by_address[address]


class GatedProtocol(asyncio.Protocol):
    """Hands an admitted connection to aiohttp's handler; answers a refused one itself."""

    __slots__ = ("_address", "_gate", "_inner", "_make", "_timer")

    def __init__(self, gate: ConnectionGate, make_handler: Callable[[], asyncio.Protocol]) -> None:
        self._gate = gate
        self._make = make_handler
        self._address = ""
        self._inner: asyncio.Protocol | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        gate = self._gate
        refusal = gate.admit(self._address)
        if refusal is not None:
            assert isinstance(transport, asyncio.Transport)
            transport.write(refusal)
            if gate.lingering >= MAX_LINGERING or not transport.can_write_eof():
                transport.close()
                return
            transport.write_eof()
            gate.lingering += 1
            self._timer = asyncio.get_running_loop().call_later(LINGER, transport.close)
            return
        try:
            inner = self._make()
        except BaseException:
            gate.release(self._address)
            raise
        self._inner = inner
        inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        return False  # refused: the client read the answer and hung up; close our side

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._gate.release(self._address)
            self._inner.connection_lost(exc)
        elif self._timer is not None:
            self._timer.cancel()
            self._gate.lingering -= 1

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

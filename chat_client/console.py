"""The terminal side of `chat-client`: stdin read as lines, stdout and stderr written without
ever blocking the event loop, and text from the server made safe to print."""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import TextIO

import aiohttp

PROG = "chat-client"
CLOSE_TIMEOUT = 5.0
# Bytes. A longer line is not sent: JSON-escaped (up to 6 bytes a character) it might not fit
# the server's default 64 KiB frame limit, and an oversized frame gets the socket closed.
MAX_LINE = 10 * 1024
READ_CHUNK = 64 * 1024

# Text from the server is someone else's: control characters could drive the terminal (ANSI
# escapes) or forge whole output lines (newlines), bidi overrides could disguise them.
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_UNPRINTABLE.update({ord("\t"): "\t", ord("\n"): "\\n", ord("\r"): "\\r"})
_UNPRINTABLE.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F))})
_UNPRINTABLE.update({c: f"\\u{c:04x}" for c in range(0x2066, 0x206A)})


def printable(value: object) -> str:
    return str(value).translate(_UNPRINTABLE)


def reason(exc: BaseException) -> str:
    """A network failure in a few words."""
    # Neither exception type carries the request's headers, so no credential can show here.
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error.errno is not None:
        return os.strerror(exc.os_error.errno).lower()  # not aiohttp's "ssl:default [...]"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return printable(str(exc) or type(exc).__name__)


def _pollable(fd: int) -> bool:
    """Whether the event loop can watch `fd`: pipes, sockets and terminals, not regular files
    nor /dev/null (the pipe transport accepts /dev/null, then never reports its end)."""
    with selectors.DefaultSelector() as selector:
        try:
            selector.register(fd, selectors.EVENT_READ)
        except (OSError, ValueError):
            return False
    return True


@contextlib.contextmanager
def blocking_modes_restored(fds: Sequence[int] = (0, 1, 2)) -> Iterator[None]:
    """Pipe transports make their file non-blocking, and a terminal's stdin, stdout and stderr
    usually share one open file: left so, it would break the shell we return to."""
    saved: dict[int, bool] = {}
    for fd in fds:
        with contextlib.suppress(OSError):
            saved[fd] = os.get_blocking(fd)
    try:
        yield
    finally:
        for fd, blocking in saved.items():
            with contextlib.suppress(OSError):
                os.set_blocking(fd, blocking)


class _WriteFlow(asyncio.BaseProtocol):
    def __init__(self) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        self.lost = asyncio.Event()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self._writable.set()

    async def drained(self) -> None:
        await self._writable.wait()


class _Output:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._transport: asyncio.WriteTransport | None = None
        self._flow: _WriteFlow | None = None

    async def open(self) -> None:
        try:
            fd = self._stream.fileno()
        except (AttributeError, ValueError, OSError):
            return
        if not _pollable(fd):
            return  # a regular file: plain writes never wait for long
        self._stream.flush()
        # A duplicate, so closing the transport leaves sys.stdout usable.
        pipe = os.fdopen(os.dup(fd), "wb", buffering=0)
        try:
            transport, flow = await asyncio.get_running_loop().connect_write_pipe(_WriteFlow, pipe)
        except (OSError, ValueError):
            pipe.close()
            return
        self._transport, self._flow = transport, flow

    def write(self, line: str) -> None:
        # "replace": a JSON string may hold a lone surrogate, which no encoding accepts.
        encoding = self._stream.encoding or "utf-8"
        data = (line + "\n").encode(encoding, "replace")
        if self._transport is None:
            with contextlib.suppress(OSError, ValueError):
                self._stream.write(data.decode(encoding))
                self._stream.flush()
        elif not self._transport.is_closing():  # the reader may have gone
            self._transport.write(data)

    async def drain(self) -> None:
        if self._flow is not None:
            await self._flow.drained()

    async def close(self) -> None:
        if self._transport is None or self._flow is None:
            return
        self._transport.close()  # writes what is buffered first
        try:
            await asyncio.wait_for(self._flow.lost.wait(), CLOSE_TIMEOUT)
        except TimeoutError:
            self._transport.abort()


class Console:
    """The client's outputs: stdout for the conversation, stderr for its own notices. Each
    line goes out at once. On a pipe or terminal it goes through a non-blocking transport:
    reading stdin through a pipe transport makes a terminal's shared file non-blocking, where
    a plain `print` fails with EAGAIN as soon as the terminal falls behind."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out = _Output(out)
        self._err = _Output(err)

    async def open(self) -> None:
        await self._out.open()
        await self._err.open()

    def say(self, line: str) -> None:
        self._out.write(line)

    def warn(self, line: str) -> None:
        self._err.write(f"{PROG}: {line}")

    async def drain(self) -> None:
        """Waits while the reader of stdout is behind, so output never piles up in memory."""
        await self._out.drain()

    async def close(self) -> None:
        await self._out.close()
        await self._err.close()


class _LineSplitter:
    """Cuts a byte stream into lines; a line longer than `limit` is given as None."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._overlong = False

    def feed(self, data: bytes) -> list[bytes | None]:
        self._buffer += data
        lines: list[bytes | None] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            lines.append(None if self._overlong or len(line) > self._limit else line)
            self._overlong = False
        if len(self._buffer) > self._limit:
            self._buffer.clear()  # memory stays bounded however long the line grows
            self._overlong = True
        return lines

    def finish(self) -> list[bytes | None]:
        """The last line when the input does not end with a newline."""
        if self._overlong:
            return [None]
        return [bytes(self._buffer)] if self._buffer else []


async def _open_stdin() -> tuple[Callable[[], Awaitable[bytes]], Callable[[], None]]:
    """A reader of stdin chunks (b"" at the end) and what closes it."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.dup(sys.stdin.fileno())  # closing our transport leaves sys.stdin alone
    except (AttributeError, ValueError, OSError):  # no stdin at all: an empty input

        async def nothing() -> bytes:
            return b""

        return nothing, lambda: None
    pipe = os.fdopen(fd, "rb", buffering=0)
    if _pollable(fd):
        reader = asyncio.StreamReader(limit=MAX_LINE)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        except (OSError, ValueError):
            pass
        else:
            return lambda: reader.read(READ_CHUNK), transport.close
    # A regular file or /dev/null: the loop cannot watch it, but reading it never blocks for
    # long, so a worker thread per chunk is enough (and asyncio.run's shutdown can join it).
    return lambda: asyncio.to_thread(os.read, fd, READ_CHUNK), pipe.close


async def stdin_lines(console: Console) -> AsyncGenerator[str, None]:
    """The non-blank lines of stdin, without their line ending."""
    encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
    read, close = await _open_stdin()
    splitter = _LineSplitter(MAX_LINE)
    try:
        while True:
            chunk = await read()
            for line in splitter.feed(chunk) if chunk else splitter.finish():
                if line is None:
                    console.warn(f"skipped a line longer than {MAX_LINE} bytes")
                    continue
                text = line.decode(encoding, "replace").removesuffix("\r")
                if text.strip():
                    yield text
            if not chunk:
                return
    finally:
        close()

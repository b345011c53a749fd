"""`chat-client`: a terminal client for the chat service.

    chat-client --url ws://127.0.0.1:8080/ws --room lobby --token TOKEN
    CHAT_PASSWORD=... chat-client --room lobby --room news --username alice

Each line read from stdin is sent to the first room; what arrives from every joined room is
printed on stdout. The credential is `--token` (or `CHAT_TOKEN`), or `--username` with the
password from `CHAT_PASSWORD` or a prompt: there is no `--password`, because `ps` shows
every process's argv to every local user (prefer `CHAT_TOKEN` to `--token` for the same
reason).

Exit status: 0 after stdin's end (every line sent and answered) or when the server closes
with 1000/1001; 1 when the connection fails or the server closes with any other code; 2 for
a usage error or a credential the services refuse; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import itertools
import json
import os
import selectors
import sys
import time
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSMsgType

from service.native.frames import ROOM

PROG = "chat-client"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
DEFAULT_AUTH_URL = "http://127.0.0.1:8081"
NORMAL_CLOSURES = (1000, 1001)
ABNORMAL_CLOSURE = 1006

CONNECT_TIMEOUT = 30.0  # the handshake includes the server's own bounded introspection
HELLO_TIMEOUT = 10.0
ANSWER_TIMEOUT = 5.0  # for the ack (or error) that answers each frame we send
CLOSE_TIMEOUT = 5.0
HEARTBEAT = 30.0  # notices a server that vanished without closing
# Bytes. A longer line is not sent: JSON-escaped (up to 6 bytes a character) it might not fit
# the server's default 64 KiB frame limit, and an oversized frame gets the socket closed.
MAX_LINE = 10 * 1024
READ_CHUNK = 64 * 1024
MAX_RATE_RETRIES = 8
MIN_GAP, MAX_GAP = 0.05, 2.0  # seconds between sends while the server is rate limiting us


class Refused(Exception):
    """A service answered an HTTP error: the handshake or the password grant was refused."""

    def __init__(self, status: int, error: str, description: str, retry_after: str | None) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.description = description
        self.retry_after = retry_after

    def explain(self) -> str:
        text = f"{self.status} {self.error}"
        if self.description:
            text += f": {self.description}"
        if self.retry_after:
            text += f" (retry after {self.retry_after} s)"
        return printable(text)


class NoAnswer(Exception):
    """The server neither acknowledged nor refused a frame in time."""


# -- options and credentials ----------------------------------------------------------------


@dataclass(frozen=True)
class TokenCredential:
    token: str = field(repr=False)


@dataclass(frozen=True)
class PasswordCredential:
    username: str
    password: str = field(repr=False)


Credential = TokenCredential | PasswordCredential


@dataclass(frozen=True)
class Options:
    """What one run of the client connects to, where it speaks, and as whom."""

    url: str
    rooms: tuple[str, ...]
    auth_url: str
    credential: Credential


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise argparse.ArgumentTypeError(f"expected a {' or '.join(schemes)} URL")
        return value

    return check


def _room(value: str) -> str:
    if not ROOM.fullmatch(value):
        raise argparse.ArgumentTypeError("a room name must match ^[A-Za-z0-9_.:-]{1,64}$")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chat from the terminal: lines on stdin go to the first --room, "
        "messages from every joined room are printed on stdout.",
    )
    parser.add_argument(
        "--url", type=_url(("ws", "wss")), default=DEFAULT_URL, help=f"default {DEFAULT_URL}"
    )
    parser.add_argument(
        "--room",
        dest="rooms",
        metavar="ROOM",
        action="append",
        type=_room,
        required=True,
        help="a room to join; repeat for more; lines are sent to the first",
    )
    parser.add_argument(
        "--auth-url",
        type=_url(("http", "https")),
        default=DEFAULT_AUTH_URL,
        help=f"the auth service, for --username (default {DEFAULT_AUTH_URL})",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--token", help="an access token (CHAT_TOKEN is safer: argv is visible to `ps`)"
    )
    who.add_argument(
        "--username",
        help="log in with the password grant; the password comes from CHAT_PASSWORD or a prompt",
    )
    # Only to say why there is none, without echoing the value as "unrecognized arguments".
    parser.add_argument("--password", nargs="?", const="", help=argparse.SUPPRESS)
    return parser


def ask_password(prompt: str) -> str:
    """The password from the terminal, never from stdin (which carries the chat lines)."""
    with warnings.catch_warnings():
        # Without a terminal getpass warns, then reads stdin with echo: refuse instead.
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return getpass.getpass(prompt)
        except getpass.GetPassWarning:
            raise OSError("no terminal to ask for the password: set CHAT_PASSWORD") from None


def parse_options(
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    password_prompt: Callable[[str], str] = ask_password,
) -> Options:
    """Options from the command line and the environment; exits 2 on a usage error."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.password is not None:
        parser.error("there is no --password (argv is visible to `ps`): set CHAT_PASSWORD")
    rooms = tuple(dict.fromkeys(args.rooms))  # a repeated room is joined once
    credential: Credential
    if args.username is not None:
        password = environ.get("CHAT_PASSWORD")
        if password is None:
            try:
                password = password_prompt(f"password for {args.username}: ")
            except (OSError, EOFError) as exc:
                parser.exit(EXIT_REFUSED, f"{PROG}: {str(exc) or 'no password given'}\n")
        credential = PasswordCredential(args.username, password)
    elif args.token:
        credential = TokenCredential(args.token)
    elif args.token is None and environ.get("CHAT_TOKEN"):
        credential = TokenCredential(environ["CHAT_TOKEN"])
    else:
        parser.error("a credential is required: --token (or CHAT_TOKEN) or --username")
    return Options(args.url, rooms, args.auth_url.rstrip("/"), credential)


# -- what is printed ----------------------------------------------------------------------

# Text from the server is someone else's: control characters could drive the terminal (ANSI
# escapes) or forge whole output lines (newlines), bidi overrides could disguise them.
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_UNPRINTABLE.update({ord("\t"): "\t", ord("\n"): "\\n", ord("\r"): "\\r"})
_UNPRINTABLE.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F))})
_UNPRINTABLE.update({c: f"\\u{c:04x}" for c in range(0x2066, 0x206A)})


def printable(value: object) -> str:
    return str(value).translate(_UNPRINTABLE)


def _clock(ts: object) -> str:
    moment = time.time()
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        moment = float(ts)
    try:
        return time.strftime("%H:%M:%S", time.localtime(moment))
    except (OverflowError, OSError, ValueError):
        return time.strftime("%H:%M:%S")


def describe(frame: Mapping[str, Any]) -> str | None:
    """The output line for a server frame, or None for frames the user need not see."""
    kind = frame.get("type")
    if kind == "message":
        sender = frame.get("from")
        username = sender.get("username") if isinstance(sender, dict) else None
        return printable(
            f"[{_clock(frame.get('ts'))}] #{frame.get('room')} <{username}>: {frame.get('text')}"
        )
    if kind in ("joined", "left"):
        return printable(f"* {kind} #{frame.get('room')}")
    if kind == "error":
        return printable(f"! error {frame.get('code')}: {frame.get('message')}")
    return None


# -- terminal input and output ------------------------------------------------------------


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


# -- the session ------------------------------------------------------------------------


@dataclass
class _Request:
    ref: int
    join: str | None  # the room of a join, which is answered by `joined` (it carries no ref)
    answer: asyncio.Future[str]


class ChatClient:
    """One session on `/ws`: joins the rooms, sends lines, prints what arrives.

    Frames are sent one at a time, each waiting for its answer (`ack`, `joined` or an error
    with its `ref`). That is how the end of stdin knows everything was delivered, and how a
    `rate_limited` error, which carries no `ref`, is known to be about the frame in flight:
    the client slows down and resends it rather than pile up strikes until the server
    closes the connection with 1008.
    """

    OK, REFUSED, RETRY = "ok", "refused", "retry"

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        rooms: Sequence[str],
        console: Console,
        *,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self._ws = ws
        self._rooms = rooms
        self._console = console
        self._answer_timeout = answer_timeout
        self._refs = itertools.count(1)
        self._inflight: _Request | None = None
        self._gap = 0.0
        self._last_send = 0.0

    async def run(self, lines: AsyncIterator[str]) -> int:
        """Chats until `lines` ends or the server closes; returns the exit status."""
        hello = await self._hello()
        if hello is not None:
            return hello
        receiver = asyncio.create_task(self._receive())
        sender = asyncio.create_task(self._send_all(lines))
        try:
            await asyncio.wait((receiver, sender), return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and not isinstance(sender.exception(), ConnectionError):
                status = sender.result()
                await self._ws.close(code=1000)
                return status
            # The server closed (a send may have failed under it): say how.
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            try:
                code, reason = await asyncio.wait_for(receiver, CLOSE_TIMEOUT)
            except TimeoutError:
                code, reason = self._ws.close_code, ""
            return self._closed(code, reason)
        finally:
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)

    async def _hello(self) -> int | None:
        """None once the hello frame arrived, else the exit status."""
        try:
            message = await self._ws.receive(timeout=HELLO_TIMEOUT)
        except TimeoutError:
            self._console.warn("the server sent no hello frame")
            return EXIT_FAILED
        if message.type is WSMsgType.TEXT:
            with contextlib.suppress(ValueError):
                frame = json.loads(message.data)
                if isinstance(frame, dict) and frame.get("type") == "hello":
                    return None
            self._console.warn("the server did not start with a hello frame")
            return EXIT_FAILED
        if message.type is WSMsgType.CLOSE:
            return self._closed(message.data, message.extra)
        return self._closed(self._ws.close_code, "")

    def _closed(self, code: int | None, reason: str | None) -> int:
        code = ABNORMAL_CLOSURE if code is None else code
        self._console.say(printable(f"* connection closed: {code} {reason or ''}".rstrip()))
        return EXIT_OK if code in NORMAL_CLOSURES else EXIT_FAILED

    async def _receive(self) -> tuple[int | None, str]:
        """Handles frames until the socket closes; returns the close code and reason."""
        while True:
            message = await self._ws.receive()
            if message.type is WSMsgType.TEXT:
                self._handle(message.data)
                await self._console.drain()
            elif message.type is WSMsgType.CLOSE:
                return message.data, message.extra or ""
            elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return self._ws.close_code, ""

    def _handle(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        kind, ref, inflight = frame.get("type"), frame.get("ref"), self._inflight
        if kind == "ack":
            self._answer(ref, self.OK)
            return
        rate_limited = kind == "error" and ref is None and frame.get("code") == "rate_limited"
        if rate_limited and inflight is not None:  # it can only be about the frame in flight
            self._answer(inflight.ref, self.RETRY)
            return
        line = describe(frame)
        if line is not None:
            self._console.say(line)
        if kind == "error" and ref is not None:
            self._answer(ref, self.REFUSED)
        elif kind == "joined" and inflight is not None and inflight.join == frame.get("room"):
            self._answer(inflight.ref, self.OK)

    def _answer(self, ref: object, outcome: str) -> None:
        inflight = self._inflight
        if inflight is not None and inflight.ref == ref and not inflight.answer.done():
            inflight.answer.set_result(outcome)

    async def _send_all(self, lines: AsyncIterator[str]) -> int:
        try:
            for room in self._rooms:
                if not await self._request({"op": "join", "room": room}):
                    return EXIT_FAILED
            async for line in lines:
                await self._request({"op": "send", "room": self._rooms[0], "text": line})
        except NoAnswer as exc:
            self._console.warn(str(exc))
            return EXIT_FAILED
        return EXIT_OK

    async def _request(self, frame: dict[str, Any]) -> bool:
        """Sends `frame` and waits for its answer; True when the server accepted it."""
        ref = next(self._refs)
        frame = {**frame, "ref": ref}
        join = frame["room"] if frame["op"] == "join" else None
        for _ in range(MAX_RATE_RETRIES):
            await self._pace()
            request = _Request(ref, join, asyncio.get_running_loop().create_future())
            self._inflight = request
            try:
                await self._ws.send_str(json.dumps(frame, ensure_ascii=False))
                self._last_send = time.monotonic()
                outcome = await asyncio.wait_for(request.answer, self._answer_timeout)
            except TimeoutError:
                raise NoAnswer(
                    f"no answer from the server within {self._answer_timeout:g} s"
                ) from None
            finally:
                self._inflight = None
            if outcome != self.RETRY:
                self._gap *= 0.9
                return outcome == self.OK
            self._gap = min(max(self._gap * 2, MIN_GAP), MAX_GAP)
        self._console.say(f"! error rate_limited: refused {MAX_RATE_RETRIES} times; not sent")
        return False

    async def _pace(self) -> None:
        wait = self._last_send + self._gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


# -- wiring -------------------------------------------------------------------------------


async def _refuse_http_errors(response: aiohttp.ClientResponse) -> None:
    """The session's `raise_for_status`: turns an error answer into `Refused` while its body,
    which says why, can still be read (`ws_connect` drops it before raising)."""
    if response.status < 400:
        return
    error, description = response.reason or "", ""
    with contextlib.suppress(ValueError, aiohttp.ClientError):
        body = json.loads(await response.read())
        if isinstance(body, dict):
            error = str(body.get("error", error))
            description = str(body.get("error_description", ""))
    raise Refused(response.status, error, description, response.headers.get("Retry-After"))


async def fetch_token(
    session: aiohttp.ClientSession, auth_url: str, who: PasswordCredential
) -> str:
    """An access token from the auth service's password grant."""
    async with session.post(
        f"{auth_url}/token",
        data={"grant_type": "password", "username": who.username, "password": who.password},
        timeout=aiohttp.ClientTimeout(total=CONNECT_TIMEOUT),
    ) as response:
        body = await response.json(content_type=None)
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise Refused(response.status, "invalid_response", "no access_token in the answer", None)
    return token


async def run(options: Options, console: Console) -> int:
    """One session from credential to close; returns the exit status."""
    async with aiohttp.ClientSession(raise_for_status=_refuse_http_errors) as session:
        credential = options.credential
        if isinstance(credential, PasswordCredential):
            try:
                token = await fetch_token(session, options.auth_url, credential)
            except Refused as refused:
                console.warn(f"the auth service refused the password grant: {refused.explain()}")
                return EXIT_REFUSED
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                console.warn(f"cannot get a token from {options.auth_url}: {_reason(exc)}")
                return EXIT_FAILED
        else:
            token = credential.token
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                ws = await session.ws_connect(
                    options.url,
                    headers={"Authorization": f"Bearer {token}"},
                    heartbeat=HEARTBEAT,
                    timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
                )
        except Refused as refused:
            console.warn(f"the chat service refused the connection: {refused.explain()}")
            return EXIT_REFUSED
        except aiohttp.WSServerHandshakeError as exc:
            console.warn(f"the chat service refused the connection: {exc.status} {exc.message}")
            return EXIT_REFUSED
        except (aiohttp.ClientError, TimeoutError) as exc:
            console.warn(f"cannot connect to {options.url}: {_reason(exc)}")
            return EXIT_FAILED
        async with ws:
            lines = stdin_lines(console)
            try:
                return await ChatClient(ws, options.rooms, console).run(lines)
            finally:
                await lines.aclose()


def _reason(exc: BaseException) -> str:
    # Neither exception type carries the request's headers, so no credential can show here.
    return printable(str(exc) or type(exc).__name__)


async def _main(options: Options) -> int:
    console = Console(sys.stdout, sys.stderr)
    with blocking_modes_restored():
        await console.open()
        try:
            return await run(options, console)
        finally:
            await console.close()


def main(argv: Sequence[str] | None = None) -> None:
    try:
        options = parse_options(argv, os.environ)
        status = asyncio.run(_main(options))
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    raise SystemExit(status)


if __name__ == "__main__":
    main()

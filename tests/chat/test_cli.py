"""`chat-client` as a user runs it: real processes against the real auth and chat services."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import pytest
from aiohttp.test_utils import TestServer

from service.cli import MAX_LINE, PasswordCredential, TokenCredential, describe, parse_options
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Client, Stack, connect, join, receive_type
from tests.conftest import PASSWORD
from tests.redis_server import free_port

# A fresh interpreter importing aiohttp on a loaded CI machine can take seconds to say hello.
DEADLINE = 15.0
REPO = Path(__file__).resolve().parents[2]
CLOCK = r"\[\d\d:\d\d:\d\d\]"


def ws_url(chat: Client) -> str:
    return str(chat.make_url("/ws").with_scheme("ws"))


def auth_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


class Cli:
    """One running chat-client: lines go to its stdin, its stdout is read with deadlines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[str] = []  # every stdout line read so far, for failure messages

    async def type(self, *lines: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(f"{line}\n" for line in lines).encode())
        await self.process.stdin.drain()

    def end_input(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    async def expect(self, pattern: str) -> str:
        """Reads stdout until a line matches `pattern` entirely."""
        assert self.process.stdout is not None
        async with asyncio.timeout(DEADLINE):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"stdout ended before {pattern!r}; saw {self.seen}")
                line = raw.decode().rstrip("\n")
                self.seen.append(line)
                if re.fullmatch(pattern, line):
                    return line

    async def result(self) -> tuple[int, str, str]:
        """Waits for the exit; returns the status and the rest of stdout and all of stderr."""
        out, err = await asyncio.wait_for(self.process.communicate(), DEADLINE)
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), err.decode()


CliFactory = Callable[..., Awaitable[Cli]]


@pytest.fixture
async def chat_client() -> AsyncIterator[CliFactory]:
    """Starts `python -m service.cli` with arguments and extra environment; every process is
    killed and reaped at teardown, whatever the test did."""
    started: list[asyncio.subprocess.Process] = []

    async def start(
        *args: str, env: dict[str, str] | None = None, stdin: IO[Any] | int | None = None
    ) -> Cli:
        environ = {k: v for k, v in os.environ.items() if k not in ("CHAT_TOKEN", "CHAT_PASSWORD")}
        environ.update(env or {})
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.cli",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is None else stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environ,
            cwd=REPO,
        )
        started.append(process)
        return Cli(process)

    try:
        yield start
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
        for process in started:
            try:
                # Reading the pipes to their end is what lets their transports close.
                await asyncio.wait_for(process.communicate(), DEADLINE)
            except RuntimeError:  # pytest-timeout interrupted a read, which is still pending
                await asyncio.wait_for(process.wait(), DEADLINE)


async def test_two_clients_chat_across_instances(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory
) -> None:
    alice_cli = await chat_client(
        "--url", ws_url(stack.a), "--room", "lobby", "--token", alice.access_token
    )
    bob_cli = await chat_client(
        "--url",
        ws_url(stack.b),
        "--room",
        "lobby",
        "--username",
        "bob",
        "--auth-url",
        auth_url(stack.auth_server),
        env={"CHAT_PASSWORD": PASSWORD},
    )
    await alice_cli.expect(r"\* joined #lobby")
    await bob_cli.expect(r"\* joined #lobby")

    await alice_cli.type("hello bob")
    await bob_cli.expect(rf"{CLOCK} #lobby <alice>: hello bob")
    await alice_cli.expect(rf"{CLOCK} #lobby <alice>: hello bob")  # members see their own
    await bob_cli.type("hi alice")
    await alice_cli.expect(rf"{CLOCK} #lobby <bob>: hi alice")

    for cli in (alice_cli, bob_cli):
        cli.end_input()
        status, out, err = await cli.result()
        assert status == 0, (out, err)
        assert err == ""
        assert alice.access_token not in out + err
        assert PASSWORD not in out + err


async def test_a_file_on_stdin_is_sent_in_order_then_eof_exits_0(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory, tmp_path: Path
) -> None:
    # A regular file: the pipe transport refuses it, so this exercises the thread fallback.
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"first\n\n   \nsecond\r\nthird")  # blank lines skipped, no final newline
    listener = await connect(stack.b, bob.access_token)
    await join(listener, "lobby")
    with lines.open("rb") as stdin:
        cli = await chat_client(
            "--url",
            ws_url(stack.a),
            "--room",
            "lobby",
            env={"CHAT_TOKEN": alice.access_token},
            stdin=stdin,
        )
        status, out, err = await cli.result()
    assert status == 0, (out, err)
    assert out.startswith("* joined #lobby\n")
    # Exit 0 came after every ack: the three lines were delivered, in order, and no blank one.
    for text in ("first", "second", "third"):
        frame = await receive_type(listener, "message")
        assert (frame["from"]["username"], frame["text"]) == ("alice", text)
    await listener.close()


async def test_refused_lines_are_reported_and_the_session_goes_on(
    stack: Stack, alice: ChatUser, chat_client: CliFactory
) -> None:
    cli = await chat_client(
        "--url",
        ws_url(stack.a),
        "--room",
        "lobby",
        "--room",
        "news",
        "--token",
        alice.access_token,
    )
    await cli.expect(r"\* joined #lobby")
    await cli.expect(r"\* joined #news")
    # Too long for the server's text limit, then too long to be sent at all.
    await cli.type("x" * 5000, "y" * 100_000, "still here")
    await cli.expect(r"! error too_long: text is limited to 4096 characters")
    await cli.expect(rf"{CLOCK} #lobby <alice>: still here")
    cli.end_input()
    status, _, err = await cli.result()
    assert status == 0, err
    assert err == f"chat-client: skipped a line longer than {MAX_LINE} bytes\n"


async def test_messages_from_every_joined_room_are_printed_escaped(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory
) -> None:
    cli = await chat_client(
        "--url",
        ws_url(stack.a),
        "--room",
        "lobby",
        "--room",
        "news",
        "--token",
        alice.access_token,
    )
    await cli.expect(r"\* joined #news")
    sender = await connect(stack.b, bob.access_token)
    await join(sender, "news")
    await sender.send_json({"op": "send", "room": "news", "text": "two\nlines \x1b[2J"})
    await cli.expect(rf"{CLOCK} #news <bob>: two\\nlines \\x1b\[2J")
    await sender.close()


async def test_rate_limited_lines_are_slowed_down_not_lost(
    make_chat: ChatFactory, alice: ChatUser, bob: ChatUser, chat_client: CliFactory
) -> None:
    chat = await make_chat(CHAT_RATE_PER_SECOND="20", CHAT_RATE_BURST="3")
    listener = await connect(chat, bob.access_token)
    await join(listener, "lobby")
    cli = await chat_client("--url", ws_url(chat), "--room", "lobby", "--token", alice.access_token)
    texts = [f"line {n}" for n in range(15)]
    await cli.type(*texts)
    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    assert "rate_limited" not in out + err
    received = [(await receive_type(listener, "message"))["text"] for _ in texts]
    assert received == texts
    await listener.close()


async def test_a_refused_join_ends_the_session_with_1(
    make_chat: ChatFactory, alice: ChatUser, chat_client: CliFactory
) -> None:
    chat = await make_chat(CHAT_MAX_ROOMS="1")
    cli = await chat_client(
        "--url", ws_url(chat), "--room", "lobby", "--room", "news", "--token", alice.access_token
    )
    await cli.expect(r"\* joined #lobby")
    await cli.expect(r"! error too_many_rooms: at most 1 rooms")
    status, _, err = await cli.result()
    assert status == 1, err


async def test_a_bad_token_exits_2_without_printing_it(
    stack: Stack, chat_client: CliFactory
) -> None:
    token = "not-a-real-token-0123456789abcdef"
    for how in ("flag", "env"):
        args = ["--url", ws_url(stack.a), "--room", "lobby"]
        cli = await chat_client(
            *args,
            *(["--token", token] if how == "flag" else []),
            env={"CHAT_TOKEN": token} if how == "env" else None,
        )
        status, out, err = await cli.result()
        assert status == 2, (how, out, err)
        assert "401 invalid_token" in err, err
        assert token not in out + err


async def test_a_wrong_password_exits_2(
    stack: Stack, alice: ChatUser, chat_client: CliFactory
) -> None:
    wrong = "not alice's password"
    cli = await chat_client(
        "--url",
        ws_url(stack.a),
        "--room",
        "lobby",
        "--username",
        "alice",
        "--auth-url",
        auth_url(stack.auth_server),
        env={"CHAT_PASSWORD": wrong},
    )
    status, out, err = await cli.result()
    assert status == 2, (out, err)
    assert "refused the password grant" in err
    assert "invalid_grant" in err
    assert wrong not in out + err


async def test_auth_service_down_at_the_handshake_exits_2(
    make_chat: ChatFactory, alice: ChatUser, chat_client: CliFactory
) -> None:
    chat = await make_chat(AUTH_URL=f"http://127.0.0.1:{free_port()}")
    cli = await chat_client("--url", ws_url(chat), "--room", "lobby", "--token", alice.access_token)
    status, out, err = await cli.result()
    assert status == 2, (out, err)
    assert "503 temporarily_unavailable" in err
    assert "retry after" in err


async def test_a_revoked_token_is_closed_4003_and_exits_1(
    stack: Stack, alice: ChatUser, chat_client: CliFactory
) -> None:
    cli = await chat_client(
        "--url", ws_url(stack.a), "--room", "lobby", "--token", alice.access_token
    )
    await cli.expect(r"\* joined #lobby")
    async with stack.auth.post("/revoke", data={"token": alice.access_token}) as response:
        assert response.status == 200
    await cli.expect(r"\* connection closed: 4003 credential revoked")
    status, _, err = await cli.result()
    assert status == 1, err


async def test_a_server_going_away_exits_0(
    make_chat: ChatFactory, alice: ChatUser, chat_client: CliFactory
) -> None:
    chat = await make_chat()
    cli = await chat_client("--url", ws_url(chat), "--room", "lobby", "--token", alice.access_token)
    await cli.expect(r"\* joined #lobby")
    closing = asyncio.create_task(chat.server.close())
    await cli.expect(r"\* connection closed: 1001 server going away")
    status, _, err = await cli.result()
    assert status == 0, err
    await closing


# -- units: options and output lines ---------------------------------------------------------


def test_credentials_come_from_flags_or_the_environment() -> None:
    base = ["--room", "lobby"]
    assert parse_options([*base, "--token", "t1"], {}).credential == TokenCredential("t1")
    assert parse_options(base, {"CHAT_TOKEN": "t2"}).credential == TokenCredential("t2")
    options = parse_options([*base, "--username", "bob"], {"CHAT_PASSWORD": "pw"})
    assert options.credential == PasswordCredential("bob", "pw")
    prompted = parse_options([*base, "--username", "bob"], {}, lambda prompt: "typed")
    assert prompted.credential == PasswordCredential("bob", "typed")
    assert "pw" not in repr(options)
    assert "t1" not in repr(TokenCredential("t1"))


@pytest.mark.parametrize(
    "argv",
    [
        ["--room", "lobby"],  # no credential
        ["--room", "lobby", "--username", "bob", "--password", "pw"],  # argv would leak it
        ["--room", "lobby", "--username", "bob", "--password=pw"],
        ["--room", "lobby", "--token", ""],
        ["--room", "lobby", "--token", "t", "--url", "127.0.0.1:8080/ws"],
        ["--room", "lobby", "--token", "t", "--username", "bob"],
        ["--room", "not a room", "--token", "t"],
        ["--token", "t"],  # no room
        ["--room", "lobby", "--token", "t", "--url", "http://127.0.0.1:8080/ws"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options(argv, {})
    assert exited.value.code == 2
    assert "pw" not in capsys.readouterr().err


def test_output_lines() -> None:
    message = {
        "type": "message",
        "room": "lobby",
        "id": "m1",
        "from": {"id": "u1", "username": "alice"},
        "text": "hi\u202e\r\x07",
        "ts": 0.5,
    }
    line = describe(message)
    assert line is not None
    clock = time.strftime("%H:%M:%S", time.localtime(0.5))  # the reader's local time
    assert line == f"[{clock}] #lobby <alice>: hi\\u202e\\r\\x07"
    assert describe({"type": "joined", "room": "news"}) == "* joined #news"
    assert describe({"type": "left", "room": "news"}) == "* left #news"
    assert describe({"type": "error", "code": "bad_room", "message": "no"}) == (
        "! error bad_room: no"
    )
    for quiet in ("ack", "pong", "refreshed", "hello"):
        assert describe({"type": quiet}) is None

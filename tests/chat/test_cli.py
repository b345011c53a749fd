"""`chat-client` as a user runs it: real processes against the real auth and chat services."""

from __future__ import annotations

import time
from pathlib import Path
from unittest.mock import ANY

import aiohttp
import pytest

from chat_client.commands import HELP, Outgoing, parse_line
from chat_client.console import MAX_LINE, reason
from chat_client.display import describe, rejoined
from chat_client.options import PasswordCredential, TokenCredential, parse_options
from tests.chat.clis import CLOCK, CliFactory, auth_url, chat_client, ws_url
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Stack, api, connect, join, receive_type
from tests.conftest import PASSWORD
from tests.redis_server import free_port

__all__ = ["chat_client"]  # the fixture, imported for the tests here


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
    await cli.expect(r"! send #lobby refused: too_long: text is limited to 4096 characters")
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
    await cli.expect(r"! join #news refused: too_many_rooms: at most 1 rooms")
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


def test_typed_lines_become_commands_or_messages() -> None:
    join_news = parse_line("/join news", "lobby")
    assert join_news == Outgoing("join", "news", key=_key(join_news))
    sent = parse_line("hello", "lobby")
    assert isinstance(sent, Outgoing)
    assert sent.frame() == {
        "op": "send",
        "room": "lobby",
        "text": "hello",
        "idempotency_key": sent.key,
    }
    assert parse_line("hello", "lobby") != sent  # each line its own key
    slash = parse_line("//shrug", "lobby")
    assert isinstance(slash, Outgoing)
    assert slash.text == "/shrug"
    leave = parse_line("/leave  lobby ", None)
    assert isinstance(leave, Outgoing)
    assert leave.frame() == {"op": "leave", "room": "lobby"}
    assert parse_line("/help", None) == HELP
    assert parse_line("/join", "lobby") == parse_line("/join two words", "lobby")
    assert str(parse_line("/join", "lobby")).startswith("! usage: /join ROOM")
    assert str(parse_line("/nick bob", "lobby")).startswith("! unknown command /nick")
    assert parse_line("hello", None) == "! not in a room: /join ROOM first"


def _key(parsed: Outgoing | str) -> str:
    assert isinstance(parsed, Outgoing)
    return parsed.key


def test_resumed_rooms_say_what_was_missed() -> None:
    joined = {"type": "joined", "room": "lobby", "epoch": "e", "offset": 7, "recovered": True}
    assert rejoined("lobby", joined, 4) == "* rejoined #lobby: 3 missed messages follow"
    assert rejoined("lobby", {**joined, "offset": 5}, 4) == (
        "* rejoined #lobby: 1 missed message follow"
    )
    assert rejoined("lobby", {**joined, "offset": 4}, 4) == "* rejoined #lobby: nothing missed"
    assert rejoined("lobby", {**joined, "recovered": False}, 4) == "* rejoined #lobby"
    assert rejoined("lobby", {"type": "joined", "room": "lobby"}, None) == (
        "* rejoined #lobby (no history: what was sent meanwhile is lost)"
    )
    assert describe({"type": "gap", "room": "lobby", "from": 2, "to": 5}) == (
        "! #lobby: messages 2 to 5 are lost (no longer in history)"
    )
    assert describe({"type": "gap", "room": "lobby", "from": 2, "to": 2}) == (
        "! #lobby: message 2 is lost (no longer in history)"
    )
    assert describe({"type": "gap", "room": "lobby", "reset": True}) == (
        "! #lobby: the room's history was reset; what was sent while you were away is lost"
    )
    assert describe({"type": "gap", "room": "lobby"}) == (
        "! #lobby: messages may have been lost (the room keeps no history)"
    )


async def test_a_refused_connection_is_said_plainly() -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await http.ws_connect(f"ws://127.0.0.1:{free_port()}/ws")
    assert reason(refused.value) == "connection refused"  # not "ssl:default [Connect call…]"


async def test_the_client_shows_who_comes_and_goes_and_a_removal(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory
) -> None:
    room = "private:plans"
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": room})
    await api(stack.a, "PUT", f"/api/rooms/{room}/members/bob", alice.access_token)
    bob_cli = await chat_client(
        "--url", ws_url(stack.b), "--room", room, "--token", bob.access_token
    )
    await bob_cli.expect(rf"\* joined #{room}")
    alice_ws = await connect(stack.a, alice.access_token)
    await join(alice_ws, room)
    await bob_cli.expect(rf"\* alice joined #{room}")
    await bob_cli.type("/who")
    await bob_cli.expect(rf"\* #{room}: 2 here: alice, bob")
    await api(stack.a, "DELETE", f"/api/rooms/{room}/members/bob", alice.access_token)
    await bob_cli.expect(rf"\* removed from #{room}: you are no longer a member")
    await bob_cli.type("still there?")  # the room is no longer the current one
    await bob_cli.expect(r"! not in a room: /join ROOM first")


def test_who_asks_for_presence() -> None:
    assert parse_line("/who", "lobby") == Outgoing("presence", "lobby", key=ANY)
    assert parse_line("/who news", "lobby") == Outgoing("presence", "news", key=ANY)
    assert parse_line("/who", None) == "! /who [ROOM]: name the room, or /join ROOM first"

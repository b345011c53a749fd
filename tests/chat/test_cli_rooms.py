"""`chat-client`'s room commands, typed into real client processes against both real
services: private rooms (create, invite, remove), DMs, presence, history paging."""

from __future__ import annotations

from unittest.mock import ANY

import pytest

from chat_client.commands import Local, Outgoing, RoomCall, dm_room, parse_line
from tests.chat.clis import CLOCK, Cli, CliFactory, chat_client, ws_url
from tests.chat.helpers import ChatUser, Stack, connect, join, send
from tests.conftest import PASSWORD, Store

__all__ = ["chat_client"]  # the fixture, imported for the tests here

ROOM = "private:plans"


@pytest.fixture
def store(redis_url: str) -> Store:
    """What these tests check is the client's; the server's rooms on a cluster are tested
    under test_private_rooms and test_presence."""
    return Store(redis_url)


@pytest.fixture
async def carol(stack: Stack) -> ChatUser:
    return await stack.user("carol", PASSWORD)


async def start(chat_client: CliFactory, url: str, user: ChatUser, *rooms: str) -> Cli:
    args = [arg for room in rooms for arg in ("--room", room)]
    cli = await chat_client("--url", url, *args, "--token", user.access_token)
    for room in rooms:
        await cli.expect(rf"\* joined #{room}")
    return cli


async def test_a_private_room_is_created_shared_and_taken_back(
    stack: Stack, alice: ChatUser, bob: ChatUser, carol: ChatUser, chat_client: CliFactory
) -> None:
    alice_cli = await start(chat_client, ws_url(stack.a), alice, "lobby")
    bob_cli = await start(chat_client, ws_url(stack.b), bob, "lobby")
    carol_cli = await start(chat_client, ws_url(stack.b), carol, "lobby")

    await alice_cli.type("/create plans")
    await alice_cli.expect(rf"\* created #{ROOM}; /invite USER lets others in")
    await alice_cli.expect(rf"\* joined #{ROOM}")
    await bob_cli.type(f"/join {ROOM}")  # not a member yet
    await bob_cli.expect(rf"! join #{ROOM} refused: forbidden: .+")
    await alice_cli.type("/invite Bob")  # the current room; a username in any letter case
    await alice_cli.expect(rf"\* Bob may now join #{ROOM}")
    await bob_cli.type(f"/join {ROOM}")
    await bob_cli.expect(rf"\* joined #{ROOM}")
    await alice_cli.expect(rf"\* bob joined #{ROOM}")

    await alice_cli.type("the plan is secret")
    await bob_cli.expect(rf"{CLOCK} #{ROOM} <alice>: the plan is secret")
    await bob_cli.type("my lips are sealed")
    await alice_cli.expect(rf"{CLOCK} #{ROOM} <bob>: my lips are sealed")

    await carol_cli.type(f"/join {ROOM}", f"/invite carol {ROOM}", f"/who {ROOM}")
    await carol_cli.expect(rf"! join #{ROOM} refused: forbidden: .+")
    await carol_cli.expect(rf"! invite carol to #{ROOM} refused: 403 forbidden: .+")
    await carol_cli.expect(rf"! presence #{ROOM} refused: forbidden: .+")
    await alice_cli.type("/invite nobody-here")
    await alice_cli.expect(rf"! invite nobody-here to #{ROOM} refused: 404 \w+: .+")

    await alice_cli.type("/who")
    await alice_cli.expect(rf"\* #{ROOM}: 2 here: alice, bob")
    await alice_cli.type("/remove bob")
    await alice_cli.expect(rf"\* bob is no longer a member of #{ROOM}")
    await bob_cli.expect(rf"\* removed from #{ROOM}: you are no longer a member")
    await alice_cli.expect(rf"\* bob left #{ROOM}")
    await bob_cli.type("/rooms", f"/switch {ROOM}", "back in the lobby")
    await bob_cli.expect(r"\* in #lobby \(current\)")  # the room is forgotten
    await bob_cli.expect(rf"! not in #{ROOM}: /join {ROOM} first")
    await bob_cli.expect(rf"{CLOCK} #lobby <bob>: back in the lobby")
    await alice_cli.type("after bob left")
    await alice_cli.expect(rf"{CLOCK} #{ROOM} <alice>: after bob left")

    bob_cli.end_input()
    status, out, err = await bob_cli.result()
    assert status == 0, (out, err)
    assert not [line for line in [*bob_cli.seen, *out.splitlines()] if "after bob left" in line]
    assert not [line for line in carol_cli.seen if "secret" in line or "sealed" in line]


async def test_switch_and_leave_act_on_the_current_room(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory
) -> None:
    cli = await start(chat_client, ws_url(stack.a), alice, "lobby", "news")
    listener = await connect(stack.b, bob.access_token)
    await join(listener, "news")
    await cli.type("/rooms", "/switch news", "to the news", "/leave", "/rooms")
    await cli.expect(r"\* in #lobby \(current\), #news")
    await cli.expect(r"\* now typing into #news")
    await cli.expect(rf"{CLOCK} #news <alice>: to the news")
    await cli.expect(r"\* left #news")
    await cli.expect(r"\* in #lobby \(current\)")
    await send(listener, "news", "not for alice any more")
    await cli.type("/who")
    await cli.expect(r"\* #lobby: 1 here: alice")
    assert not [line for line in cli.seen if "not for alice" in line]
    await listener.close()


async def test_a_direct_conversation_by_username(
    stack: Stack, alice: ChatUser, bob: ChatUser, carol: ChatUser, chat_client: CliFactory
) -> None:
    alice_cli = await start(chat_client, ws_url(stack.a), alice, "lobby")
    bob_cli = await start(chat_client, ws_url(stack.b), bob, "lobby")
    carol_cli = await start(chat_client, ws_url(stack.b), carol, "lobby")
    await alice_cli.type("/dm Bob", "/dm alice")
    await alice_cli.expect(r"\* joined #dm:alice,bob")
    await alice_cli.expect(r"! /dm needs another user's name")
    await bob_cli.type("/dm alice")
    await bob_cli.expect(r"\* joined #dm:alice,bob")
    await alice_cli.expect(r"\* bob joined #dm:alice,bob")
    await alice_cli.type("just between us")  # the DM is the current room now
    await bob_cli.expect(rf"{CLOCK} #dm:alice,bob <alice>: just between us")
    await carol_cli.type("/join dm:alice,bob", "/join dm:bob,alice")
    await carol_cli.expect(r"! join #dm:alice,bob refused: forbidden: .+")
    await carol_cli.expect(r"! join #dm:bob,alice refused: bad_room: .+")
    await bob_cli.type("/leave")
    await bob_cli.expect(r"\* left #dm:alice,bob")
    await alice_cli.expect(r"\* bob left #dm:alice,bob")


async def test_history_pages_back_from_the_earliest_message_shown(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory
) -> None:
    sender = await connect(stack.b, bob.access_token)
    await join(sender, "lobby")
    for n in range(1, 31):
        await send(sender, "lobby", f"m{n}")
    cli = await start(chat_client, ws_url(stack.a), alice, "lobby")
    await send(sender, "lobby", "live")
    await cli.expect(rf"{CLOCK} #lobby <bob>: live")

    await cli.type("/history 10")
    await cli.expect(r"\* #lobby: 10 earlier messages \(/history for more\)")
    for n in range(21, 31):
        await cli.expect(rf"{CLOCK} #lobby <bob>: m{n}")
    await cli.type("/history")  # 20 at a time: all that is left
    await cli.expect(r"\* #lobby: 20 earlier messages")
    for n in range(1, 21):
        await cli.expect(rf"{CLOCK} #lobby <bob>: m{n}")
    await cli.type("/history", "/history 0", "/history 101")
    await cli.expect(r"\* #lobby: no earlier messages")
    await cli.expect(r"! usage: /history \[N\] \(N from 1 to 100\)")
    await cli.expect(r"! usage: /history \[N\] \(N from 1 to 100\)")

    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    printed = [*cli.seen, *out.splitlines()]
    for text in ("live", *(f"m{n}" for n in range(1, 31))):
        assert sum(line.endswith(f"<bob>: {text}") for line in printed) == 1, (text, printed)
    await sender.close()


async def test_help_lists_every_command(
    stack: Stack, alice: ChatUser, chat_client: CliFactory
) -> None:
    cli = await start(chat_client, ws_url(stack.a), alice, "lobby")
    await cli.type("/help")
    await cli.expect(r"commands \(ROOM: the current room when left out\)")
    for command in (
        "join", "switch", "rooms", "leave", "create", "invite", "remove", "dm", "who", "history",
        "help",
    ):  # fmt: skip
        await cli.expect(rf"  /{command}\b.*")
    await cli.type("/kick bob")
    await cli.expect(r"! unknown command /kick; commands: /join /switch .* /help")


# -- units: what a typed command becomes -----------------------------------------------------


def test_room_commands_parse_to_calls_frames_or_a_usage_line() -> None:
    assert parse_line("/create plans", "lobby") == RoomCall("create", ROOM)
    assert parse_line("/create team:x", "lobby") == RoomCall("create", "team:x")
    assert parse_line("/invite bob", ROOM) == RoomCall("invite", ROOM, "bob")
    assert parse_line("/remove bob private:other", ROOM) == RoomCall(
        "remove", "private:other", "bob"
    )
    dm = parse_line("/dm Bob", "lobby", me="Alice")
    assert isinstance(dm, Outgoing)
    assert dm.frame() == {"op": "join", "room": "dm:alice,bob"}  # lower case, sorted
    assert dm_room("zed", "Amy") == "dm:amy,zed"
    history = parse_line("/history 5", "lobby")
    assert isinstance(history, Outgoing)
    assert history.frame(before=40) == {"op": "history", "room": "lobby", "limit": 5, "before": 40}
    assert history.frame() == {"op": "history", "room": "lobby", "limit": 5}  # the newest
    assert parse_line("/switch news", "lobby") == Local("switch", "news")
    assert parse_line("/leave", "lobby") == Outgoing("leave", "lobby", key=ANY)
    for wrong in (
        "/create", "/create two words", "/create a/b", "/invite", "/invite x", "/invite bob a b",
        "/dm", "/history ten", "/history 0", "/history 101", "/history ²", "/switch", "/who a b",
    ):  # fmt: skip
        said = parse_line(wrong, "lobby", me="alice")
        assert str(said).startswith("! usage: "), (wrong, said)
    assert parse_line("/dm ALICE", "lobby", me="alice") == "! /dm needs another user's name"
    assert str(parse_line("/invite bob", None)).startswith("! /invite USER [ROOM]: name the room")
    assert parse_line("/history", None) == "! /history: /join ROOM first"

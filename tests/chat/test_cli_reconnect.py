"""`chat-client` stays connected as a person expects: it resumes its rooms after a drop (to the
next instance), shows what it missed or exactly what is lost, refreshes its token, and takes
/join and /leave."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from chat_client.options import PasswordCredential
from chat_client.tokens import Tokens, refuse_http_errors
from tests.chat.clis import CLOCK, CliFactory, auth_url, chat_client, proxies, proxy_to, ws_url
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Stack, api, connect, join, receive_type, send
from tests.conftest import PASSWORD, AuthClientFactory
from tests.faults import LinkProxy

__all__ = ["chat_client", "proxies"]  # fixtures, imported for the tests here


async def test_a_dropped_connection_resumes_and_shows_what_was_missed(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory, proxies: list[LinkProxy]
) -> None:
    link, url = await proxy_to(stack.a, proxies)
    cli = await chat_client("--url", url, "--room", "lobby", "--token", alice.access_token)
    await cli.expect(r"\* joined #lobby")
    bob_ws = await connect(stack.b, bob.access_token)
    await join(bob_ws, "lobby")
    await send(bob_ws, "lobby", "before")
    await cli.expect(rf"{CLOCK} #lobby <bob>: before")

    link.cut()  # the network goes: no close frame, and no way back for now
    await cli.expect(r"\* connection lost \(1006\)")
    for n in range(3):
        await send(bob_ws, "lobby", f"while away {n}")
    await cli.type("typed while away")  # waits for the connection, then is sent once
    await cli.expect(r"\* cannot connect to .*")
    link.restore()
    await cli.expect(r"\* rejoined #lobby: 3 missed messages follow")
    for n in range(3):
        await cli.expect(rf"{CLOCK} #lobby <bob>: while away {n}")
    await cli.expect(rf"{CLOCK} #lobby <alice>: typed while away")
    while (await receive_type(bob_ws, "message"))["text"] != "typed while away":
        pass  # bob's own messages (the acks of his sends skipped some)
    await send(bob_ws, "lobby", "live again")
    await cli.expect(rf"{CLOCK} #lobby <bob>: live again")
    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    printed = [*cli.seen, *out.splitlines()]
    for text in ("while away 0", "while away 1", "while away 2", "typed while away"):
        assert sum(line.endswith(f": {text}") for line in printed) == 1, printed
    await bob_ws.close()


async def test_beyond_history_the_client_shows_the_exact_gap(
    make_chat: ChatFactory,
    alice: ChatUser,
    bob: ChatUser,
    chat_client: CliFactory,
    proxies: list[LinkProxy],
) -> None:
    chat = await make_chat(CHAT_NAMESPACES='{"": {"history_size": 2}}')
    link, url = await proxy_to(chat, proxies)
    cli = await chat_client("--url", url, "--room", "lobby", "--token", alice.access_token)
    await cli.expect(r"\* joined #lobby")
    bob_ws = await connect(chat, bob.access_token)
    await join(bob_ws, "lobby")
    link.cut()
    await cli.expect(r"\* connection lost \(1006\)")
    for n in range(1, 6):
        await send(bob_ws, "lobby", f"m{n}")
    link.restore()
    await cli.expect(r"\* rejoined #lobby")
    await cli.expect(r"! #lobby: messages 1 to 3 are lost \(no longer in history\)")
    await cli.expect(rf"{CLOCK} #lobby <bob>: m4")
    await cli.expect(rf"{CLOCK} #lobby <bob>: m5")
    await bob_ws.close()


async def test_an_instance_going_away_sends_the_client_to_the_next(
    make_chat: ChatFactory,
    alice: ChatUser,
    bob: ChatUser,
    chat_client: CliFactory,
    proxies: list[LinkProxy],
) -> None:
    first, second = await make_chat(), await make_chat()
    way_in, second_url = await proxy_to(second, proxies)
    way_in.cut()  # the second instance is out of reach until the messages were sent
    cli = await chat_client(
        "--url",
        ws_url(first),
        "--url",
        second_url,
        "--room",
        "lobby",
        "--token",
        alice.access_token,
    )
    await cli.expect(r"\* joined #lobby")
    bob_ws = await connect(second, bob.access_token)
    await join(bob_ws, "lobby")
    await first.server.close()
    await cli.expect(r"\* connection closed: 1001 server going away")
    await send(bob_ws, "lobby", "sent while you moved")
    way_in.restore()
    await cli.expect(r"\* rejoined #lobby: 1 missed message follow")
    await cli.expect(rf"{CLOCK} #lobby <bob>: sent while you moved")
    await bob_ws.close()


@pytest.fixture
async def short_lived(make_auth_client: AuthClientFactory) -> TestClient:  # type: ignore[type-arg]
    """An auth instance (same Redis, same keys) issuing access tokens that live 4 s."""
    return await make_auth_client(AUTH_ACCESS_TOKEN_TTL="4", AUTH_LEEWAY="0")


async def test_a_password_login_is_refreshed_before_it_expires(
    make_chat: ChatFactory,
    alice: ChatUser,
    bob: ChatUser,
    short_lived: TestClient,  # type: ignore[type-arg]
    chat_client: CliFactory,
) -> None:
    chat = await make_chat(CHAT_EXPIRY_GRACE="0")
    cli = await chat_client(
        "--url",
        ws_url(chat),
        "--room",
        "lobby",
        "--username",
        "alice",
        "--auth-url",
        auth_url(short_lived.server),
        env={"CHAT_PASSWORD": PASSWORD},
    )
    await cli.expect(r"\* joined #lobby")
    for _ in range(3):  # past the first token's expiry, and the second's
        await cli.expect(r"\* token refreshed; valid until \d\d:\d\d:\d\d")
    await cli.type("still here")
    await cli.expect(rf"{CLOCK} #lobby <alice>: still here")
    assert not [line for line in cli.seen if "connection closed" in line]
    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    assert PASSWORD not in out + err


async def test_a_token_that_cannot_be_refreshed_ends_the_session_at_expiry(
    make_chat: ChatFactory,
    alice: ChatUser,
    short_lived: TestClient,  # type: ignore[type-arg]
    chat_client: CliFactory,
) -> None:
    chat = await make_chat(CHAT_EXPIRY_GRACE="0")
    async with short_lived.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    ) as response:
        token = (await response.json())["access_token"]
    cli = await chat_client("--url", ws_url(chat), "--room", "lobby", "--token", token)
    await cli.expect(r"\* joined #lobby")
    await cli.expect(r"\* connection closed: 4001 token expired")
    status, _, err = await cli.result()
    assert status == 1
    assert "the token expired; log in with --username to stay connected" in err


async def test_join_and_leave_are_commands(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory
) -> None:
    news = await connect(stack.b, bob.access_token)
    await join(news, "news")
    cli = await chat_client(
        "--url", ws_url(stack.a), "--room", "lobby", "--token", alice.access_token
    )
    await cli.expect(r"\* joined #lobby")
    await cli.type("/join news", "to the news", "//slash in news")
    await cli.expect(r"\* joined #news")
    assert (await receive_type(news, "message"))["text"] == "to the news"  # not to lobby
    assert (await receive_type(news, "message"))["text"] == "/slash in news"
    await cli.type("/leave news", "/nick bob", "/join not a room", "back in the lobby")
    await cli.expect(r"\* left #news")
    await cli.expect(r"! unknown command /nick; commands: .*")
    await cli.expect(r"! usage: /join ROOM .*")
    await cli.expect(rf"{CLOCK} #lobby <alice>: back in the lobby")
    await send(news, "news", "not for alice any more")
    await cli.type("/leave lobby", "nowhere to go")
    await cli.expect(r"\* left #lobby")
    await cli.expect(r"! not in a room: /join ROOM first")
    assert not [line for line in cli.seen if "not for alice" in line]
    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    await news.close()


async def test_a_server_disconnect_4004_is_followed_by_a_reconnect(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory
) -> None:
    cli = await chat_client(
        "--url", ws_url(stack.a), "--url", ws_url(stack.b), "--room", "lobby",
        "--token", alice.access_token,
    )  # fmt: skip
    await cli.expect(r"\* joined #lobby")
    server = await stack.server_token()
    status, _ = await api(stack.a, "POST", "/api/users/alice/disconnect", server)
    assert status == 204
    await cli.expect(r"\* connection closed: 4004 disconnected by the server")
    await cli.expect(r"\* rejoined #lobby: nothing missed")
    bob_ws = await connect(stack.b, bob.access_token)
    await join(bob_ws, "lobby")
    await send(bob_ws, "lobby", "still with us?")
    await cli.expect(rf"{CLOCK} #lobby <bob>: still with us\?")


async def test_room_commands_carry_the_refreshed_token(
    make_chat: ChatFactory,
    alice: ChatUser,
    bob: ChatUser,
    short_lived: TestClient,  # type: ignore[type-arg]
    chat_client: CliFactory,
) -> None:
    chat = await make_chat(CHAT_EXPIRY_GRACE="0")
    cli = await chat_client(
        "--url", ws_url(chat), "--room", "lobby", "--username", "alice",
        "--auth-url", auth_url(short_lived.server), env={"CHAT_PASSWORD": PASSWORD},
    )  # fmt: skip
    await cli.expect(r"\* joined #lobby")
    for _ in range(2):  # past the first token's expiry
        await cli.expect(r"\* token refreshed; valid until \d\d:\d\d:\d\d")
    await cli.type("/create plans", "/invite bob", "/remove bob")
    await cli.expect(r"\* created #private:plans; /invite USER lets others in")
    await cli.expect(r"\* joined #private:plans")
    await cli.expect(r"\* bob may now join #private:plans")
    await cli.expect(r"\* bob is no longer a member of #private:plans")


async def test_refreshes_racing_for_one_stale_token_rotate_it_once(stack: Stack) -> None:
    await stack.user("alice", PASSWORD)
    async with aiohttp.ClientSession(raise_for_status=refuse_http_errors) as http:
        tokens = Tokens(http, auth_url(stack.auth_server), PasswordCredential("alice", PASSWORD))
        await tokens.start()
        stale = tokens.access
        # Unserialised, both would spend the one refresh token: the second use revokes the
        # family (and the client would fall back to a password grant: two different tokens).
        first, second = await asyncio.gather(tokens.refresh(stale), tokens.refresh(stale))
        assert first == second != stale
        assert await tokens.refresh() not in (stale, first)  # the family is still good

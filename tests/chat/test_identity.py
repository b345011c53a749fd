"""Identity stays true for the life of every socket: revocation, expiry, refresh, logout.

Every revocation path is exercised against a socket held by instance B while the action is
taken through the auth service (and, where a socket is used, instance A): the event has to
travel through Redis to reach it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest

from auth_service.__main__ import _keys_command
from auth_service.components import COMPONENTS
from auth_service.settings import load_settings as load_auth_settings
from tests.chat.conftest import ORIGIN, ChatFactory
from tests.chat.helpers import ChatUser, Stack, closed_with, connect, receive
from tests.conftest import PASSWORD, Store, auth_environ
from tests.faults import LinkProxy

REVOCATION_DEADLINE = 1.0  # the promise: a revoked credential's sockets close within 1 s


async def assert_refused_now(stack: Stack, headers: dict[str, str]) -> None:
    response = await stack.b.get(
        "/ws",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            **headers,
        },
    )
    assert response.status == 401


async def test_revoking_an_access_token_closes_its_sockets_everywhere(
    stack: Stack, alice: ChatUser
) -> None:
    on_a = await connect(stack.a, alice.access_token)
    on_b = await connect(stack.b, alice.access_token)
    async with stack.auth.post("/revoke", data={"token": alice.access_token}) as response:
        assert response.status == 200
    assert await closed_with(on_b, REVOCATION_DEADLINE) == 4003
    assert await closed_with(on_a, REVOCATION_DEADLINE) == 4003
    await assert_refused_now(stack, {"Authorization": f"Bearer {alice.access_token}"})


async def test_revoking_the_refresh_token_closes_the_grants_sockets(
    stack: Stack, alice: ChatUser
) -> None:
    other_grant = await stack.token("alice", PASSWORD)
    doomed = await connect(stack.b, alice.access_token)
    survivor = await connect(stack.b, other_grant["access_token"])
    async with stack.auth.post("/revoke", data={"token": alice.refresh_token}) as response:
        assert response.status == 200
    assert await closed_with(doomed, REVOCATION_DEADLINE) == 4003
    await survivor.send_json({"op": "ping"})
    assert await receive(survivor) == {"type": "pong"}
    await survivor.close()
    await assert_refused_now(stack, {"Authorization": f"Bearer {alice.access_token}"})


async def test_refresh_token_reuse_closes_the_familys_sockets(
    stack: Stack, alice: ChatUser
) -> None:
    ws = await connect(stack.b, alice.access_token)
    for _ in range(2):  # the second use is a reuse: the family dies
        async with stack.auth.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": alice.refresh_token}
        ):
            pass
    assert await closed_with(ws, REVOCATION_DEADLINE) == 4003


async def test_logout_closes_the_sessions_sockets(stack: Stack, alice: ChatUser) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # the test server is an IP address
    async with aiohttp.ClientSession(
        base_url=stack.auth_server.make_url(""), cookie_jar=jar
    ) as browser:
        async with browser.post("/login", json={"username": "alice", "password": PASSWORD}) as r:
            cookie = r.cookies["chat_session"].value
        headers = {"Cookie": f"chat_session={cookie}", "Origin": ORIGIN}
        ws = await connect(stack.b, headers=headers)
        async with browser.post("/logout", json={}) as r:
            assert r.status == 204
    assert await closed_with(ws, REVOCATION_DEADLINE) == 4003
    await assert_refused_now(stack, headers)


async def test_password_change_ends_the_other_sessions_and_tokens(
    stack: Stack, alice: ChatUser
) -> None:
    cookie = await stack.session_cookie("alice", PASSWORD)
    session_socket = await connect(
        stack.b, headers={"Cookie": f"chat_session={cookie}", "Origin": ORIGIN}
    )
    token_socket = await connect(stack.b, alice.access_token)
    current = await stack.token("alice", PASSWORD)
    current_socket = await connect(stack.a, current["access_token"])

    async with stack.auth.post(
        "/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers={"Authorization": f"Bearer {current['access_token']}"},
    ) as response:
        assert response.status == 204
    assert await closed_with(session_socket, REVOCATION_DEADLINE) == 4003
    assert await closed_with(token_socket, REVOCATION_DEADLINE) == 4003
    # The credential that changed the password carries on.
    await current_socket.send_json({"op": "ping"})
    assert await receive(current_socket) == {"type": "pong"}
    await current_socket.close()
    # The old password no longer works; the new one does.
    async with stack.auth.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    ) as response:
        assert response.status == 400
    await stack.token("alice", "a brand new passphrase")


async def test_password_change_needs_the_current_password(stack: Stack, alice: ChatUser) -> None:
    async with stack.auth.post(
        "/me/password",
        json={"current_password": "not it at all", "new_password": "a brand new passphrase"},
        headers={"Authorization": f"Bearer {alice.access_token}"},
    ) as response:
        assert response.status == 403
    async with stack.auth.post(
        "/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers={"Authorization": f"Bearer {alice.access_token}"},
    ) as response:
        assert response.status == 400
    async with stack.auth.post(
        "/me/password", json={"current_password": PASSWORD, "new_password": "long enough pw"}
    ) as response:
        assert response.status == 401


async def test_revoke_all_my_sessions_closes_every_socket(stack: Stack, alice: ChatUser) -> None:
    second = await stack.token("alice", PASSWORD)
    sockets = [
        await connect(stack.b, alice.access_token),
        await connect(stack.a, second["access_token"]),
    ]
    async with stack.auth.post(
        "/me/revoke-all", json={}, headers={"Authorization": f"Bearer {alice.access_token}"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["revoked"] == 2
    for ws in sockets:
        assert await closed_with(ws, REVOCATION_DEADLINE) == 4003
    await assert_refused_now(stack, {"Authorization": f"Bearer {second['access_token']}"})


async def test_disabling_a_user_closes_all_their_sockets(
    stack: Stack,
    alice: ChatUser,
    bob: ChatUser,
    redis_url: str,
    store: Store,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from auth_service.__main__ import main as auth_cli

    alice_ws = await connect(stack.b, alice.access_token)
    bob_ws = await connect(stack.b, bob.access_token)
    env = auth_environ(redis_url, **store.environ())
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(SystemExit) as exit_status:
            await asyncio.to_thread(auth_cli, ["users", "disable", "alice"])
    assert exit_status.value.code == 0
    assert "disabled alice" in capsys.readouterr().out
    assert await closed_with(alice_ws, REVOCATION_DEADLINE) == 4003
    await bob_ws.send_json({"op": "ping"})
    assert await receive(bob_ws) == {"type": "pong"}
    await bob_ws.close()
    await assert_refused_now(stack, {"Authorization": f"Bearer {alice.access_token}"})
    async with stack.auth.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    ) as response:
        assert response.status == 400


# -- expiry and refresh -------------------------------------------------------------------


async def short_lived(stack: Stack, user: ChatUser, seconds: float) -> str:
    """A real access token of `user` whose exp is `seconds` from now."""
    claims: dict[str, Any] = jwt.decode(user.access_token, options={"verify_signature": False})
    claims["exp"] = int(time.time() + seconds)
    claims["jti"] = claims["jti"][::-1]
    return await stack.auth_server.app[COMPONENTS].access.sign(claims)


async def test_socket_closes_with_4001_when_its_token_expires(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_EXPIRY_GRACE="0")
    token = await short_lived(stack, alice, 2)
    ws = await chat.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    hello = await receive(ws)
    started = time.time()
    assert await closed_with(ws, 5) == 4001
    # Not before exp: with no grace the close is scheduled at exp itself (the 10 ms allow only
    # for timer and clock jitter).
    assert time.time() >= hello["expires_at"] - 0.01
    assert time.time() - started < 4


async def test_refresh_extends_the_socket(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser
) -> None:
    # Room for a slow introspection of the refresh (a loaded machine, a cluster) before the
    # first token ends: what is tested is that the refresh extends the socket.
    chat = await make_chat(CHAT_EXPIRY_GRACE="0", CHAT_INTROSPECTION_TIMEOUT="5")
    token = await short_lived(stack, alice, 4)
    ws = await chat.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    hello = await receive(ws)
    await ws.send_json({"op": "refresh", "token": alice.access_token, "ref": "r"})
    refreshed = await receive(ws)
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    assert refreshed == {"type": "refreshed", "expires_at": claims["exp"], "ref": "r"}
    # Past the first token's expiry the socket still works.
    # Expiry is wall-clock time: this waits for the first token's exp to pass, not for an event.
    await asyncio.sleep(max(0.0, hello["expires_at"] + 1 - time.time()))
    await ws.send_json({"op": "ping"})
    assert await receive(ws) == {"type": "pong"}
    await ws.close()


async def test_a_foreign_or_bad_token_does_not_extend_anything(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(CHAT_EXPIRY_GRACE="0")
    token = await short_lived(stack, alice, 2)
    ws = await chat.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    await receive(ws)
    await ws.send_json({"op": "refresh", "token": bob.access_token})
    assert (await receive(ws))["code"] == "wrong_user"
    await ws.send_json({"op": "refresh", "token": "garbage"})
    assert (await receive(ws))["code"] == "bad_token"
    await ws.send_json({"op": "refresh", "token": alice.refresh_token})
    assert (await receive(ws))["code"] == "bad_token"
    assert await closed_with(ws, 5) == 4001


async def test_a_session_socket_ends_when_its_session_ends(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, store: Store
) -> None:
    cookie = await stack.session_cookie("alice", PASSWORD)
    client = store.client()
    key = f"auth:session:{cookie}"
    data = json.loads(await client.get(key))
    data["session"]["exp"] = int(time.time()) + 2  # a session about to end
    await client.set(key, json.dumps(data), ex=60)
    await client.aclose()
    headers = {"Cookie": f"chat_session={cookie}", "Origin": ORIGIN}
    chat = await make_chat(CHAT_EXPIRY_GRACE="0")
    ws = await chat.ws_connect("/ws", headers=headers)
    hello = await receive(ws)
    assert hello["expires_at"] == data["session"]["exp"]
    assert await closed_with(ws, 5) == 4001


# -- missed events --------------------------------------------------------------------------


@pytest.fixture
async def proxied_chat(
    make_chat: ChatFactory, redis_server: Any, store: Store
) -> AsyncIterator[tuple[Any, LinkProxy]]:
    if redis_server is None:
        pytest.skip("needs the suite's own redis-server")
    if store.cluster_nodes:
        pytest.skip("one Redis's link cut; on a cluster: test_cluster_faults")
    proxy = LinkProxy(redis_server.port)
    await proxy.start()
    chat = await make_chat(REDIS_URL=proxy.url)
    yield chat, proxy
    await proxy.close()


async def test_a_revocation_missed_while_the_link_was_down_still_closes_the_socket(
    proxied_chat: tuple[Any, LinkProxy], stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    from service.views import NODE

    chat, proxy = proxied_chat
    doomed = [await connect(chat, alice.access_token) for _ in range(3)]
    keepers = [await connect(chat, bob.access_token) for _ in range(3)]
    node = chat.app[NODE]
    broker = node.broker
    reconnects = broker.reconnects
    requests = node.introspection.requests

    proxy.cut()  # the instance's Redis link drops...
    async with stack.auth.post("/revoke", data={"token": alice.access_token}) as response:
        assert response.status == 200  # ...and the event is published while it cannot hear
    proxy.restore()

    for ws in doomed:
        assert await closed_with(ws, 10) == 4003
    assert broker.reconnects == reconnects + 1
    assert node._revalidation is not None
    await node._revalidation
    # Six sockets, two distinct credentials: two requests (coalesced), not six.
    assert node.introspection.requests - requests == 2
    for keeper in keepers:
        await keeper.send_json({"op": "ping"})
        assert await receive(keeper) == {"type": "pong"}
        await keeper.close()


async def test_retiring_a_signing_key_closes_the_sockets_it_signed_for(
    stack: Stack, alice: ChatUser, bob: ChatUser, redis_url: str, store: Store
) -> None:
    """Finding 6: a socket opened with a token whose key is then retired closes with 4003,
    and the instance's cached answer for that token goes with it."""
    old_kid = jwt.get_unverified_header(alice.access_token)["kid"]
    doomed = await connect(stack.b, alice.access_token)
    settings = load_auth_settings(auth_environ(redis_url, **store.environ()))
    rotate = argparse.Namespace(command="keys", action="rotate", kid=None)
    assert await _keys_command(settings, rotate) == 0
    await stack.auth_server.app[COMPONENTS].keyring.load()
    fresh = (await stack.token("bob", PASSWORD))["access_token"]
    survivor = await connect(stack.b, fresh)
    retire = argparse.Namespace(command="keys", action="retire", kid=old_kid)
    assert await _keys_command(settings, retire) == 0
    assert await closed_with(doomed, REVOCATION_DEADLINE) == 4003
    await assert_refused_now(stack, {"Authorization": f"Bearer {alice.access_token}"})
    await survivor.send_json({"op": "ping"})
    assert await receive(survivor) == {"type": "pong"}
    await survivor.close()

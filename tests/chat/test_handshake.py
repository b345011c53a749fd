"""The handshake: each credential route, and every refusal before the upgrade."""

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt
import pytest

from auth_service.components import COMPONENTS
from service.views import NODE
from tests.chat.conftest import ORIGIN, ChatFactory
from tests.chat.helpers import ChatUser, Stack, connect, receive
from tests.conftest import PASSWORD
from tests.redis_server import free_port


async def test_bearer_header_is_accepted(stack: Stack, alice: ChatUser) -> None:
    ws = await stack.a.ws_connect("/ws", headers={"Authorization": f"Bearer {alice.access_token}"})
    hello = await receive(ws)
    assert hello["type"] == "hello"
    assert hello["user"] == {"id": alice.id, "username": "alice"}
    assert hello["connection_id"]
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    assert hello["expires_at"] == claims["exp"]
    await ws.close()


async def test_subprotocol_bearer_is_accepted_and_not_echoed(stack: Stack, alice: ChatUser) -> None:
    ws = await stack.a.ws_connect("/ws", protocols=("chat.v1", f"bearer.{alice.access_token}"))
    assert ws.protocol == "chat.v1"
    assert (await receive(ws))["user"]["username"] == "alice"
    await ws.close()


async def test_session_cookie_from_an_allowed_origin_is_accepted(
    stack: Stack, alice: ChatUser
) -> None:
    cookie = await stack.session_cookie("alice", PASSWORD)
    ws = await stack.a.ws_connect(
        "/ws", headers={"Cookie": f"chat_session={cookie}", "Origin": ORIGIN}
    )
    assert (await receive(ws))["user"]["username"] == "alice"
    await ws.close()


@pytest.mark.parametrize("origin", ["https://evil.example", None, "https://chat.example.evil"])
async def test_session_cookie_from_another_origin_is_403(
    stack: Stack, alice: ChatUser, origin: str | None
) -> None:
    cookie = await stack.session_cookie("alice", PASSWORD)
    headers = {"Cookie": f"chat_session={cookie}"}
    if origin is not None:
        headers["Origin"] = origin
    response = await stack.a.get("/ws", headers={**headers, **upgrade_headers()})
    assert response.status == 403


def upgrade_headers() -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }


async def handshake_status(stack: Stack, headers: dict[str, str]) -> aiohttp.ClientResponse:
    response = await stack.a.get("/ws", headers={**upgrade_headers(), **headers})
    return response


async def test_no_credential_is_401_bearer(stack: Stack) -> None:
    response = await handshake_status(stack, {})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "invalid_token" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-token"},
        {"Sec-WebSocket-Protocol": "chat.v1, bearer.garbage"},
        {"Cookie": "chat_session=" + "A" * 43, "Origin": ORIGIN},
    ],
)
async def test_bad_credential_is_401_invalid_token(stack: Stack, headers: dict[str, str]) -> None:
    response = await handshake_status(stack, headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_bad_bearer_does_not_fall_through_to_a_good_cookie(
    stack: Stack, alice: ChatUser
) -> None:
    cookie = await stack.session_cookie("alice", PASSWORD)
    response = await handshake_status(
        stack,
        {"Authorization": "Bearer nope", "Cookie": f"chat_session={cookie}", "Origin": ORIGIN},
    )
    assert response.status == 401


async def test_expired_token_is_401(stack: Stack, alice: ChatUser) -> None:
    claims: dict[str, Any] = jwt.decode(alice.access_token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 60
    claims["iat"] = claims["exp"] - 900
    expired = await stack.auth_server.app[COMPONENTS].access.sign(claims)
    response = await handshake_status(stack, {"Authorization": f"Bearer {expired}"})
    assert response.status == 401
    assert "invalid_token" in response.headers["WWW-Authenticate"]


async def test_refresh_token_is_not_an_access_credential(stack: Stack, alice: ChatUser) -> None:
    response = await handshake_status(stack, {"Authorization": f"Bearer {alice.refresh_token}"})
    assert response.status == 401


async def test_service_client_token_is_not_a_user(stack: Stack) -> None:
    from tests.auth.helpers import CHAT_AUTH

    async with stack.auth.post(
        "/token", data={"grant_type": "client_credentials"}, headers=CHAT_AUTH
    ) as r:
        token = (await r.json())["access_token"]
    response = await handshake_status(stack, {"Authorization": f"Bearer {token}"})
    assert response.status == 401


async def test_auth_service_down_is_503_with_retry_after(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(AUTH_URL=f"http://127.0.0.1:{free_port()}")
    response = await chat.get(
        "/ws", headers={**upgrade_headers(), "Authorization": f"Bearer {alice.access_token}"}
    )
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0


async def test_wrong_client_secret_is_503_not_fail_open(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_CLIENT_SECRET="not-the-secret")
    response = await chat.get(
        "/ws", headers={**upgrade_headers(), "Authorization": f"Bearer {alice.access_token}"}
    )
    assert response.status == 503


async def test_origin_policy_always_checks_token_handshakes_too(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_ORIGIN_POLICY="always")
    bearer = {"Authorization": f"Bearer {alice.access_token}"}
    response = await chat.get(
        "/ws", headers={**upgrade_headers(), **bearer, "Origin": "https://x.example"}
    )
    assert response.status == 403
    ws = await connect(chat, alice.access_token, headers={"Origin": ORIGIN})
    await ws.close()
    ws = await connect(chat, alice.access_token)  # no Origin: not a browser
    await ws.close()


async def test_concurrent_handshakes_with_one_token_make_one_introspection(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    from service.views import NODE

    chat = await make_chat(CHAT_MAX_CONNECTIONS_PER_USER="100")
    introspection = chat.app[NODE].introspection
    before = introspection.requests
    sockets = await asyncio.gather(*(connect(chat, alice.access_token) for _ in range(100)))
    assert introspection.requests - before == 1
    await asyncio.gather(*(ws.close() for ws in sockets))


async def test_plain_get_without_upgrade_is_400(stack: Stack, alice: ChatUser) -> None:
    response = await stack.a.get("/ws", headers={"Authorization": f"Bearer {alice.access_token}"})
    assert response.status == 400


async def test_bearer_subprotocol_without_chat_v1_is_refused_and_not_logged(
    stack: Stack, alice: ChatUser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await handshake_status(
        stack, {"Sec-WebSocket-Protocol": f"bearer.{alice.access_token}"}
    )
    assert response.status == 400
    response = await handshake_status(
        stack,
        {"Authorization": f"Bearer {alice.access_token}", "Sec-WebSocket-Protocol": "graphql-ws"},
    )
    assert response.status == 400
    assert alice.access_token not in caplog.text


async def test_no_credential_reaches_a_log_line(
    stack: Stack, alice: ChatUser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cookie = await stack.session_cookie("alice", PASSWORD)
    for headers in (
        {"Authorization": f"Bearer {alice.access_token}"},
        {"Cookie": f"chat_session={cookie}", "Origin": ORIGIN},
    ):
        ws = await connect(stack.a, headers=headers)
        await ws.close()
    ws = await stack.a.ws_connect("/ws", protocols=("chat.v1", f"bearer.{alice.access_token}"))
    await ws.close()
    await handshake_status(stack, {"Authorization": "Bearer forged.token.value"})
    assert caplog.records  # the handshakes did log; the check below is not vacuous
    for secret in (alice.access_token, alice.refresh_token, cookie, "forged.token.value"):
        assert secret not in caplog.text


async def test_sockets_per_user_are_limited(
    make_chat: ChatFactory, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(CHAT_MAX_CONNECTIONS_PER_USER="2")
    bearer = {"Authorization": f"Bearer {alice.access_token}"}
    first = await connect(chat, alice.access_token)
    (first_connection,) = chat.app[NODE].sockets
    second = await connect(chat, alice.access_token)
    response = await chat.get("/ws", headers={**upgrade_headers(), **bearer})
    assert response.status == 429
    assert "Retry-After" in response.headers
    assert (await response.json())["error"] == "too_many_connections"
    other = await connect(chat, bob.access_token)  # another user is not affected
    await first.close()
    await asyncio.wait_for(first_connection.finished.wait(), 5)
    await chat.app[NODE].stores.user_sockets.drain()  # its slot given back in Redis
    third = await connect(chat, alice.access_token)  # a closed socket gave its slot back
    for ws in (second, third, other):
        await ws.close()


async def test_the_per_user_limit_holds_across_instances(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    a = await make_chat(CHAT_MAX_CONNECTIONS_PER_USER="2")
    b = await make_chat(CHAT_MAX_CONNECTIONS_PER_USER="2")
    bearer = {"Authorization": f"Bearer {alice.access_token}"}
    on_a = await connect(a, alice.access_token)
    await connect(b, alice.access_token)
    for chat in (a, b):  # two in all, on two instances: the third is refused on either
        response = await chat.get("/ws", headers={**upgrade_headers(), **bearer})
        assert response.status == 429
    (connection,) = a.app[NODE].sockets
    await on_a.close()
    await asyncio.wait_for(connection.finished.wait(), 5)
    await a.app[NODE].stores.user_sockets.drain()
    await connect(b, alice.access_token)  # the slot freed on A is usable on B


async def test_sockets_per_process_are_limited(
    make_chat: ChatFactory, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await make_chat(CHAT_MAX_CONNECTIONS="1")
    first = await connect(chat, alice.access_token)
    introspection = chat.app[NODE].introspection
    asked = introspection.requests
    response = await chat.get(
        "/ws", headers={**upgrade_headers(), "Authorization": f"Bearer {bob.access_token}"}
    )
    assert response.status == 503
    assert "Retry-After" in response.headers
    assert introspection.requests == asked  # refused before spending a look-up on bob
    await first.close()


async def test_a_session_cookie_sent_twice_is_refused(stack: Stack, alice: ChatUser) -> None:
    """Finding 9: a second session cookie planted by another application on this host is
    not chosen between; the handshake is refused before anyone is asked about either."""
    cookie = await stack.session_cookie("alice", PASSWORD)
    requests = stack.a.app[NODE].introspection.requests
    response = await handshake_status(
        stack, {"Cookie": f"chat_session={cookie}; chat_session={'P' * 43}", "Origin": ORIGIN}
    )
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"
    assert stack.a.app[NODE].introspection.requests == requests
    ws = await connect(stack.a, headers={"Cookie": f"chat_session={cookie}", "Origin": ORIGIN})
    await ws.close()

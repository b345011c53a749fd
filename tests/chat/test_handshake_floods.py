"""Handshakes with made-up credentials (finding 8 of the attack on 326b726): refused without
asking the auth service when the token cannot be ours, and an address that keeps failing is
refused outright for a while; real tokens, including those of a key published later, pass."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any

import aiohttp
import jwt

from auth_service import keys
from auth_service.components import COMPONENTS
from service.auth.refusal_alarm import REFUSALS
from service.views import NODE
from tests.auth.helpers import password_grant
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Client, Stack, connect
from tests.conftest import PASSWORD, AuthClientFactory

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


async def status(chat: Client, token: str) -> int:
    response = await chat.get("/ws", headers={**UPGRADE, "Authorization": f"Bearer {token}"})
    return response.status


async def made_up_tokens(stack: Stack, alice: ChatUser) -> tuple[list[str], list[str]]:
    """JWT-shaped values an attacker can make without the signing key: those the cheap checks
    give away (shape, a key id never published claiming to be old, and one the service
    signed but that expired long ago), and those only their signature gives away (the real
    header and claims with a made-up signature)."""
    real_header = alice.access_token.split(".")[0]
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    access = stack.auth_server.app[COMPONENTS].access
    cheap = [
        *(f"{b64(os.urandom(30))}.{b64(os.urandom(60))}.{b64(os.urandom(64))}" for _ in range(40)),
        # A key id the service never published, claiming to be old.
        *(
            f"{segment({'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': os.urandom(8).hex()})}."
            f"{segment({**claims, 'iat': int(time.time()) - 3600})}.{b64(os.urandom(64))}"
            for _ in range(20)
        ),
        # Expired beyond the margin the local check allows (the look-up decides nearer exp).
        await access.sign({**claims, "iat": int(time.time()) - 900, "exp": int(time.time()) - 120}),
    ]
    forged = [f"{real_header}.{segment(claims)}.{b64(os.urandom(64))}" for _ in range(20)]
    return cheap, forged


async def test_made_up_bearer_values_never_reach_the_auth_service(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser
) -> None:
    """What the cheap checks give away is refused on the spot in every state; a made-up
    signature is, once `REFUSALS` of them reached the auth service and armed the local
    signature check (service/auth/refusal_alarm.py)."""
    chat = await make_chat(CHAT_HANDSHAKE_FAILURES="1000")
    node = chat.app[NODE]
    cheap, forged = await made_up_tokens(stack, alice)
    before = node.introspection.requests
    for token in cheap:
        assert await status(chat, token) == 401
    assert node.introspection.requests == before  # each was refused on the spot
    assert not node.checker.alarm.armed  # cheap refusals are no sign of a flood
    for token in forged:
        assert await status(chat, token) == 401
    assert node.introspection.requests == before + REFUSALS  # then the alarm armed...
    assert node.checker.alarm.armed
    for token in cheap[:5]:
        assert await status(chat, token) == 401
    assert node.introspection.requests == before + REFUSALS  # ...and the rest cost none
    ws = await connect(chat, alice.access_token)  # the real one still goes through
    assert node.introspection.requests == before + REFUSALS + 1
    await ws.close()


async def test_while_armed_made_up_signatures_never_reach_the_auth_service(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_HANDSHAKE_FAILURES="1000")
    node = chat.app[NODE]
    _, forged = await made_up_tokens(stack, alice)
    for _ in range(REFUSALS):
        node.checker.alarm.refused()  # as after a burst the auth service refused
    before = node.introspection.requests
    for token in forged:
        assert await status(chat, token) == 401
    assert node.introspection.requests == before


async def test_an_address_that_keeps_failing_is_refused_for_a_while(
    make_chat: ChatFactory, alice: ChatUser
) -> None:
    chat = await make_chat(CHAT_HANDSHAKE_FAILURES="5", CHAT_HANDSHAKE_FAILURE_WINDOW="60")
    bad = f"{b64(os.urandom(30))}.{b64(os.urandom(60))}.{b64(os.urandom(64))}"
    assert [await status(chat, bad) for _ in range(5)] == [401] * 5
    response = await chat.get(
        "/ws", headers={**UPGRADE, "Authorization": f"Bearer {alice.access_token}"}
    )
    assert response.status == 429  # the address, not the credential, is refused now
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert (await response.json())["error"] == "too_many_requests"
    # A new connection from it is refused as it is accepted, before it has sent anything:
    # what is refused anyway costs no request parsing.
    reader, writer = await asyncio.open_connection(chat.server.host, chat.server.port)
    try:
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 429"), answer
    assert b"Retry-After: " in answer
    # Another address is not: 127.0.0.0/8 all reaches the server.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        ws = await session.ws_connect(
            chat.make_url("/ws"), headers={"Authorization": f"Bearer {alice.access_token}"}
        )
        assert (await ws.receive_json())["type"] == "hello"
        await ws.close()


async def test_a_token_signed_by_a_key_published_later_is_accepted(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser
) -> None:
    chat = await make_chat()
    ws = await connect(chat, alice.access_token)  # the chat instance has read the keys
    await ws.close()
    parts = stack.auth_server.app[COMPONENTS]
    new_kid = await keys.rotate(parts.redis)
    await parts.keyring.load()
    fresh = (await stack.token("alice", PASSWORD))["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    ws = await connect(chat, fresh)
    await ws.close()


async def test_a_key_a_stale_replica_does_not_publish_yet_is_left_to_the_look_up(
    make_chat: ChatFactory, make_auth_client: AuthClientFactory, stack: Stack, alice: ChatUser
) -> None:
    """Auth replicas each keep a copy of the ring for up to 30 s: the replica the chat reads
    the keys from may not publish a key another replica already signs with. A token that
    recent is not refused on the spot; the look-up decides (and accepts it)."""
    chat = await make_chat()
    ws = await connect(chat, alice.access_token)  # the chat has read the (stale) keys
    await ws.close()
    other = await make_auth_client()
    new_kid = await keys.rotate(other.app[COMPONENTS].redis)
    await other.app[COMPONENTS].keyring.load()  # only this replica signs with it so far
    fresh = (await password_grant(other))["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    published = await stack.auth_server.app[COMPONENTS].keyring.jwks()
    assert new_kid not in {key["kid"] for key in published["keys"]}  # the stale replica
    ws = await connect(chat, fresh)
    await ws.close()

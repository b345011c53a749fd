"""POST /revoke (RFC 7009) and the revocation events it publishes."""

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from auth_service.revocation import CHANNEL
from tests.auth.helpers import CHAT_AUTH, Client, introspect, refresh_grant, user_with_tokens
from tests.conftest import OTHER_CLIENT, AuthClientFactory, Store


@pytest.fixture
async def revocation_events(store: Store) -> AsyncIterator[asyncio.Queue[dict[str, str]]]:
    """Events published on the revocation channel, as a queue."""
    client = aioredis.Redis.from_url(store.url, decode_responses=True)  # pub/sub reaches every node
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    # Only once the server confirms is the subscription live; events before that are lost.
    confirmation = await pubsub.get_message(timeout=5)
    assert confirmation is not None
    assert confirmation["type"] == "subscribe"
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def pump() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                queue.put_nowait(json.loads(message["data"]))

    task = asyncio.create_task(pump())
    yield queue
    task.cancel()
    await pubsub.aclose()
    await client.aclose()


async def test_revoked_access_token_is_inactive_and_announced(
    auth: Client, revocation_events: asyncio.Queue[dict[str, str]]
) -> None:
    tokens = await user_with_tokens(auth)
    jti = (await introspect(auth, tokens["access_token"]))["jti"]
    response = await auth.post("/revoke", data={"token": tokens["access_token"]})
    assert response.status == 200
    assert await introspect(auth, tokens["access_token"]) == {"active": False}
    me = await auth.get("/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status == 401
    event = await asyncio.wait_for(revocation_events.get(), 5)
    assert event == {"kind": "jti", "value": jti, "reason": "revoked"}
    # The refresh token of the same grant is untouched by revoking one access token.
    assert (await introspect(auth, tokens["refresh_token"]))["active"] is True


async def test_revoking_a_refresh_token_kills_its_family(
    auth: Client, revocation_events: asyncio.Queue[dict[str, str]]
) -> None:
    tokens = await user_with_tokens(auth)
    sid = (await introspect(auth, tokens["access_token"]))["sid"]
    response = await auth.post(
        "/revoke", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert response.status == 200
    assert await introspect(auth, tokens["refresh_token"]) == {"active": False}
    assert await introspect(auth, tokens["access_token"]) == {"active": False}
    assert (await refresh_grant(auth, tokens["refresh_token"])).status == 400
    event = await asyncio.wait_for(revocation_events.get(), 5)
    assert event == {"kind": "sid", "value": sid, "reason": "revoked"}


async def test_refresh_token_reuse_is_announced(
    auth: Client, revocation_events: asyncio.Queue[dict[str, str]]
) -> None:
    tokens = await user_with_tokens(auth)
    sid = (await introspect(auth, tokens["access_token"]))["sid"]
    await refresh_grant(auth, tokens["refresh_token"])
    await refresh_grant(auth, tokens["refresh_token"])
    event = await asyncio.wait_for(revocation_events.get(), 5)
    assert event == {"kind": "sid", "value": sid, "reason": "refresh_token_reuse"}


@pytest.mark.parametrize("token", ["garbage", "rt_" + "A" * 43, "a.b.c"])
async def test_unknown_tokens_are_200(auth: Client, token: str) -> None:
    response = await auth.post("/revoke", data={"token": token})
    assert response.status == 200


async def test_revoke_twice_is_200(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    for _ in range(2):
        assert (await auth.post("/revoke", data={"token": tokens["access_token"]})).status == 200


async def test_malformed_revoke_requests(auth: Client) -> None:
    assert (await auth.post("/revoke", data={})).status == 400
    assert (await auth.post("/revoke", json={"token": "x"})).status == 400
    response = await auth.post(
        "/revoke", data={"token": "x"}, headers={"Authorization": "Basic d3Jvbmc6d3Jvbmc="}
    )
    assert response.status == 401


async def test_unknown_revocation_hint_is_unsupported_token_type(auth: Client) -> None:
    response = await auth.post("/revoke", data={"token": "x", "token_type_hint": "session"})
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "unsupported_token_type"
    assert body["error_description"] == "token_type_hint must be one of access_token, refresh_token"


async def test_revoking_again_announces_nothing(
    auth: Client, revocation_events: asyncio.Queue[dict[str, str]]
) -> None:
    """Finding 2: each event makes every chat instance look up what it names, so a loop of
    /revoke on one token must cost one event, not one per call."""
    tokens = await user_with_tokens(auth)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        for _ in range(10):
            assert (await auth.post("/revoke", data={"token": token})).status == 200
    sentinel = await user_with_tokens(auth, "bob")
    await auth.post("/revoke", data={"token": sentinel["access_token"]})
    kinds = [(await asyncio.wait_for(revocation_events.get(), 5))["kind"] for _ in range(3)]
    assert kinds == ["jti", "sid", "jti"]  # one each, then the sentinel: nothing in between
    assert revocation_events.empty()


async def test_a_replayed_refresh_token_is_announced_once(
    auth: Client, revocation_events: asyncio.Queue[dict[str, str]]
) -> None:
    tokens = await user_with_tokens(auth)
    await refresh_grant(auth, tokens["refresh_token"])
    for _ in range(5):  # the first reuse kills the family; the rest, and /revoke, find it dead
        await refresh_grant(auth, tokens["refresh_token"])
        await auth.post("/revoke", data={"token": tokens["refresh_token"]})
    sentinel = await user_with_tokens(auth, "bob")
    await auth.post("/revoke", data={"token": sentinel["access_token"]})
    first = await asyncio.wait_for(revocation_events.get(), 5)
    assert first["reason"] == "refresh_token_reuse"
    assert (await asyncio.wait_for(revocation_events.get(), 5))["kind"] == "jti"


async def test_revocations_per_address_are_limited(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_REVOKE_MAX_PER_ADDRESS="3")
    for _ in range(3):
        assert (await auth.post("/revoke", data={"token": "garbage"})).status == 200
    response = await auth.post("/revoke", data={"token": "garbage"})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    assert (await response.json())["error"] == "too_many_requests"


async def test_a_confidential_clients_token_is_revoked_by_that_client_only(
    auth: Client, revocation_events: asyncio.Queue[dict[str, str]]
) -> None:
    """RFC 7009 §2.1: the token must have been issued to the client revoking it."""
    response = await auth.post(
        "/token", data={"grant_type": "client_credentials"}, headers=CHAT_AUTH
    )
    service_token = (await response.json())["access_token"]
    other = {"Authorization": aiohttp.encode_basic_auth(*OTHER_CLIENT)}
    for headers in ({}, other):
        response = await auth.post("/revoke", data={"token": service_token}, headers=headers)
        assert response.status == 400
        assert (await response.json())["error"] == "unauthorized_client"
    assert (await introspect(auth, service_token))["active"] is True
    response = await auth.post("/revoke", data={"token": service_token}, headers=CHAT_AUTH)
    assert response.status == 200
    assert (await asyncio.wait_for(revocation_events.get(), 5))["kind"] == "jti"
    assert await introspect(auth, service_token) == {"active": False}


async def test_a_registered_client_is_not_held_to_the_address_quota(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_REVOKE_MAX_PER_ADDRESS="3")
    for _ in range(6):
        response = await auth.post("/revoke", data={"token": "garbage"}, headers=CHAT_AUTH)
        assert response.status == 200

"""Refresh token families in Redis: rotation keeps the user's grant index, revocation never
brings an expired family back."""

import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from auth_service.components import COMPONENTS
from auth_service.grants import grants_key
from auth_service.refresh import family_key, legacy_family_key, legacy_record_key
from auth_service.revocation import CHANNEL
from tests.auth.helpers import (
    Client,
    introspect,
    password_grant,
    refresh_grant,
    register,
    user_with_tokens,
)
from tests.conftest import PASSWORD, AuthClientFactory, Store


async def test_rotation_extends_the_familys_entry_in_the_grant_index(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    grant = await introspect(auth, tokens["refresh_token"])
    response = await refresh_grant(auth, tokens["refresh_token"])
    assert response.status == 200
    successor = await introspect(auth, (await response.json())["refresh_token"])
    redis = auth.app[COMPONENTS].redis
    score = await redis.zscore(grants_key(grant["sub"]), f"f:{grant['sid']}")
    assert score == successor["exp"]


async def test_revoking_a_family_marks_it_and_keeps_its_expiry(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    family = (await introspect(auth, tokens["refresh_token"]))["sid"]
    parts = auth.app[COMPONENTS]
    ttl = await parts.redis.ttl(family_key(family))
    await parts.refresh.revoke_family(family, "revoked")
    assert await parts.redis.hget(family_key(family), "revoked") == "1"
    assert 0 < await parts.redis.ttl(family_key(family)) <= ttl
    assert await introspect(auth, tokens["access_token"]) == {"active": False}


async def test_revoking_an_expired_family_does_not_recreate_it(auth: Client) -> None:
    parts = auth.app[COMPONENTS]
    await parts.refresh.revoke_family("0" * 32, "revoked")
    assert await parts.redis.exists(family_key("0" * 32)) == 0


async def test_a_user_holds_at_most_the_grant_limit(
    make_auth_client: AuthClientFactory, store: Store
) -> None:
    """Finding 5: every login leaves a grant for 14 days; past AUTH_MAX_GRANTS_PER_USER the
    least recently used are revoked (and announced), never the one just made."""
    auth = await make_auth_client(AUTH_MAX_GRANTS_PER_USER="3")
    await register(auth)
    grants = [await password_grant(auth) for _ in range(3)]
    parts = auth.app[COMPONENTS]
    first = await introspect(auth, grants[0]["access_token"])
    # Scores are expiry seconds: made within one second, the grants tie. Spread them as if
    # grant 0 had been refreshed last and grant 1 used least recently.
    families = [(await introspect(auth, g["access_token"]))["sid"] for g in grants]
    scores = (first["exp"], first["exp"] - 20, first["exp"] - 10)
    for family, score in zip(families, scores, strict=True):
        await parts.redis.zadd(grants_key(first["sub"]), {f"f:{family}": score})
    events = aioredis.Redis.from_url(store.url, decode_responses=True).pubsub()
    await events.subscribe(CHANNEL)
    assert (await events.get_message(timeout=5) or {}).get("type") == "subscribe"
    newest = await password_grant(auth)
    login = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    assert login.status == 200
    revoked = []
    for _ in range(2):
        message = await events.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None
        revoked.append(json.loads(message["data"]))
    await events.aclose()
    sids = [(await introspect(auth, g["access_token"])).get("sid") for g in grants]
    assert sids[1] is None  # grants 1 and 2 were the least recently used: both gone
    assert sids[2] is None
    assert [event["reason"] for event in revoked] == ["grant_limit"] * 2
    assert [event["value"] for event in revoked] == families[1:]
    assert (await introspect(auth, newest["access_token"]))["active"] is True
    assert (await introspect(auth, grants[0]["access_token"]))["active"] is True
    assert await parts.redis.zcard(grants_key(first["sub"])) == 3


async def test_revoked_grants_do_not_take_the_slots_of_live_ones(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_MAX_GRANTS_PER_USER="3")
    await register(auth)
    kept = await password_grant(auth)
    for _ in range(5):  # grants made and revoked at once leave no trace in the index
        doomed = await password_grant(auth)
        await auth.post("/revoke", data={"token": doomed["refresh_token"]})
    reused = await password_grant(auth)
    await refresh_grant(auth, reused["refresh_token"])
    await refresh_grant(auth, reused["refresh_token"])  # a reuse: revoked by the rotation
    await password_grant(auth)
    await password_grant(auth)
    assert (await introspect(auth, kept["refresh_token"]))["active"] is True
    user_id = (await introspect(auth, kept["access_token"]))["sub"]
    assert await auth.app[COMPONENTS].redis.zcard(grants_key(user_id)) == 3


# -- tokens from before the family moved into the token (rt_<secret>) ------------------------

LEGACY_TOKEN = "rt_" + "L" * 43


async def _legacy_grant(auth: Client) -> tuple[str, str, str]:
    """A family and a refresh token stored as the previous release stored them, and an
    access token of that family: (family, refresh token, access token)."""
    user = await register(auth)
    parts = auth.app[COMPONENTS]
    family, now = "f" * 32, int(time.time())
    exp = now + parts.refresh.ttl
    redis = parts.redis
    await redis.hset(
        legacy_family_key(family),
        mapping={"user_id": user["id"], "client_id": "public", "revoked": "0"},
    )
    await redis.expireat(legacy_family_key(family), exp)
    await redis.hset(
        legacy_record_key(LEGACY_TOKEN),
        mapping={
            "user_id": user["id"], "family": family, "client_id": "public", "scope": "chat",
            "iat": now, "exp": exp, "spent": "0", "jti": "j" * 32,
        },
    )  # fmt: skip
    await redis.expireat(legacy_record_key(LEGACY_TOKEN), exp)
    access, _ = await parts.access.issue(
        sub=user["id"], username="alice", scope="chat", client_id="public", sid=family
    )
    return family, LEGACY_TOKEN, access


async def test_a_token_from_before_the_family_moved_into_it_still_rotates(auth: Client) -> None:
    family, legacy, access = await _legacy_grant(auth)
    assert (await introspect(auth, access))["active"] is True  # read from the old name
    assert (await introspect(auth, legacy))["sid"] == family
    response = await refresh_grant(auth, legacy)
    assert response.status == 200, await response.text()
    successor = (await response.json())["refresh_token"]
    assert successor.startswith(f"rt_{family}.")  # the new format, the same family
    assert (await introspect(auth, successor))["active"] is True
    assert (await introspect(auth, access))["active"] is True
    # the old token is spent under its new name: using it again is a reuse
    again = await refresh_grant(auth, legacy)
    assert again.status == 400
    for token in (successor, access):
        assert await introspect(auth, token) == {"active": False}


async def test_revoking_a_family_from_before_the_tag_ends_its_access_tokens(
    auth: Client,
) -> None:
    family, _legacy, access = await _legacy_grant(auth)
    parts = auth.app[COMPONENTS]
    assert await parts.refresh.revoke_family(family, "revoked") is not None
    assert await introspect(auth, access) == {"active": False}
    assert await parts.redis.hget(legacy_family_key(family), "revoked") == "1"


async def test_a_revocation_racing_the_copy_is_carried_over(
    auth: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    family, legacy, _access = await _legacy_grant(auth)
    parts = auth.app[COMPONENTS]
    hgetall = parts.redis.hgetall

    async def read_before_the_revocation(name: str) -> Any:
        answer = await hgetall(name)
        if name == legacy_family_key(family):
            # the copy read the family as live; the revocation lands right after the read
            await parts.redis.hset(legacy_family_key(family), "revoked", "1")
        return answer

    monkeypatch.setattr(parts.redis, "hgetall", read_before_the_revocation)
    assert await parts.refresh.lookup(legacy) is None
    assert await parts.redis.hget(family_key(family), "revoked") == "1"

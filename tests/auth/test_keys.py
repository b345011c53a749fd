"""Signing keys: shared through Redis, rotated without breaking issued tokens, or from files."""

import argparse
import json
from pathlib import Path

import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_service import keys
from auth_service.__main__ import _keys_command
from auth_service.components import COMPONENTS
from auth_service.revocation import CHANNEL
from auth_service.settings import AuthSettings
from tests.auth.helpers import Client, introspect, password_grant, user_with_tokens
from tests.conftest import AuthClientFactory, Store


async def kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def test_rotation_keeps_old_tokens_valid(make_auth_client: AuthClientFactory) -> None:
    first = await make_auth_client()
    second = await make_auth_client()
    old = await user_with_tokens(first)
    new_kid = await keys.rotate(first.app[COMPONENTS].redis)

    # Both replicas sign with the new key once they re-read the ring...
    for replica in (first, second):
        await replica.app[COMPONENTS].keyring.load()
    fresh = await password_grant(second)
    assert await kid(fresh["access_token"]) == new_kid
    assert await kid(old["access_token"]) != new_kid
    # ...and both keys verify, at either replica, and both are published.
    for replica in (first, second):
        assert (await introspect(replica, old["access_token"]))["active"] is True
        assert (await introspect(replica, fresh["access_token"]))["active"] is True
        published = {
            k["kid"] for k in (await (await replica.get("/.well-known/jwks.json")).json())["keys"]
        }
        assert {new_kid, await kid(old["access_token"])} <= published


async def test_a_replica_that_has_not_reloaded_still_verifies_new_tokens(
    make_auth_client: AuthClientFactory,
) -> None:
    first = await make_auth_client()
    second = await make_auth_client()
    await user_with_tokens(first)
    await keys.rotate(first.app[COMPONENTS].redis)
    await first.app[COMPONENTS].keyring.load()
    fresh = await password_grant(first)
    # `second` never reloaded: the unknown kid makes it re-read the ring once.
    assert (await introspect(second, fresh["access_token"]))["active"] is True


async def test_retired_key_stops_verifying(auth: Client) -> None:
    old = await user_with_tokens(auth)
    old_kid = await kid(old["access_token"])
    redis = auth.app[COMPONENTS].redis
    await keys.rotate(redis)
    assert await keys.retire(redis, old_kid)
    await auth.app[COMPONENTS].keyring.load()
    assert await introspect(auth, old["access_token"]) == {"active": False}


async def test_the_active_key_cannot_be_retired(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    active = await kid(tokens["access_token"])
    with pytest.raises(ValueError, match="active signing key cannot be retired"):
        await keys.retire(auth.app[COMPONENTS].redis, active)


async def test_keys_from_files(make_auth_client: AuthClientFactory, tmp_path: Path) -> None:
    paths = []
    for name in ("new.pem", "old.pem"):
        key = Ed25519PrivateKey.generate()
        path = tmp_path / name
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        paths.append(str(path))
    auth = await make_auth_client(AUTH_SIGNING_KEY_FILES=",".join(paths))
    tokens = await user_with_tokens(auth)
    jwks = (await (await auth.get("/.well-known/jwks.json")).json())["keys"]
    assert len(jwks) == 2
    assert await kid(tokens["access_token"]) == jwks[0]["kid"]
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in jwks)


async def test_a_lost_active_key_is_replaced_not_fatal(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client()
    redis = auth.app[COMPONENTS].redis
    await redis.delete(keys.KEYS_HASH)  # e.g. evicted, while auth:keys:active survives
    await auth.app[COMPONENTS].keyring.load()
    tokens = await user_with_tokens(auth)
    assert (await introspect(auth, tokens["access_token"]))["active"] is True


async def test_a_key_retired_elsewhere_ends_its_tokens_on_every_replica_at_once(
    make_auth_client: AuthClientFactory, auth_settings: AuthSettings, store: Store
) -> None:
    """Finding 6: retiring a key must end what it signed now, not when each replica next
    re-reads the ring, and the retirement is announced so chat instances act on it."""
    first = await make_auth_client()
    second = await make_auth_client()
    old = await user_with_tokens(first)
    old_kid = await kid(old["access_token"])
    assert (await introspect(second, old["access_token"]))["active"] is True  # ring loaded
    events = aioredis.Redis.from_url(store.url, decode_responses=True).pubsub()
    await events.subscribe(CHANNEL)
    assert (await events.get_message(timeout=5) or {}).get("type") == "subscribe"
    rotate = argparse.Namespace(command="keys", action="rotate", kid=None)
    assert await _keys_command(auth_settings, rotate) == 0
    retire = argparse.Namespace(command="keys", action="retire", kid=old_kid)
    assert await _keys_command(auth_settings, retire) == 0
    message = await events.get_message(ignore_subscribe_messages=True, timeout=5)
    await events.aclose()
    assert message is not None
    assert json.loads(message["data"]) == {
        "kind": "kid",
        "value": old_kid,
        "reason": "key_retired",
    }
    for replica in (first, second):  # neither has re-read the ring
        assert await introspect(replica, old["access_token"]) == {"active": False}


async def test_a_token_living_longer_than_the_service_issues_is_rejected(auth: Client) -> None:
    """Finding 6: a token signed with the real key (a leaked key) but with a lifetime the
    service never issues is refused, so it cannot outlive a rotation by years."""
    tokens = await user_with_tokens(auth)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    access = auth.app[COMPONENTS].access
    lifetime = access.ttl + access.leeway
    same = await access.sign({**claims, "exp": claims["iat"] + lifetime})
    assert (await introspect(auth, same))["active"] is True  # the control: at the bound
    for exp in (claims["iat"] + lifetime + 1, claims["iat"] + 10 * 365 * 86400):
        assert await introspect(auth, await access.sign({**claims, "exp": exp})) == {
            "active": False
        }


async def test_a_ring_stored_under_the_old_names_is_moved_and_still_verifies(
    store: Store,
) -> None:
    redis = store.client()
    try:
        old = keys.KeyRing(redis)
        await old.load()  # a ring made now, then put back under the pre-tag names
        kid = (await old.signing_key()).kid
        pem = await redis.hget(keys.KEYS_HASH, kid)
        await redis.delete(keys.KEYS_HASH, keys.ACTIVE_KID)
        await redis.hset(keys.LEGACY_KEYS_HASH, kid, str(pem))
        await redis.set(keys.LEGACY_ACTIVE_KID, kid)
        ring = keys.KeyRing(redis)
        await ring.load()
        assert (await ring.signing_key()).kid == kid  # the same key signs: its tokens verify
        assert await redis.hget(keys.KEYS_HASH, kid) == pem
    finally:
        await redis.aclose()

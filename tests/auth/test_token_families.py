"""Refresh token families in Redis: rotation keeps the user's grant index, revocation never
brings an expired family back."""

from auth_service.components import COMPONENTS
from auth_service.grants import grants_key
from auth_service.tokens import family_key
from tests.auth.helpers import Client, introspect, refresh_grant, user_with_tokens


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
    await parts.refresh.revoke_family(family)
    assert await parts.redis.hget(family_key(family), "revoked") == "1"
    assert 0 < await parts.redis.ttl(family_key(family)) <= ttl
    assert await introspect(auth, tokens["access_token"]) == {"active": False}


async def test_revoking_an_expired_family_does_not_recreate_it(auth: Client) -> None:
    parts = auth.app[COMPONENTS]
    await parts.refresh.revoke_family("0" * 32)
    assert await parts.redis.exists(family_key("0" * 32)) == 0

"""Refresh tokens: rotation, reuse detection that kills the family, concurrency."""

import asyncio

from tests.auth.helpers import CHAT_AUTH, Client, introspect, refresh_grant, user_with_tokens
from tests.conftest import PASSWORD, AuthClientFactory, Store


async def test_refresh_rotates_and_the_new_pair_works(auth: Client) -> None:
    first = await user_with_tokens(auth)
    response = await refresh_grant(auth, first["refresh_token"])
    assert response.status == 200
    second = await response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await introspect(auth, second["access_token"]))["username"] == "alice"
    # The successor is itself usable once more.
    assert (await refresh_grant(auth, second["refresh_token"])).status == 200


async def test_refresh_keeps_the_family_as_sid(auth: Client) -> None:
    first = await user_with_tokens(auth)
    second = await (await refresh_grant(auth, first["refresh_token"])).json()
    sid_first = (await introspect(auth, first["access_token"]))["sid"]
    assert sid_first == (await introspect(auth, second["access_token"]))["sid"]


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(auth: Client) -> None:
    first = await user_with_tokens(auth)
    second = await (await refresh_grant(auth, first["refresh_token"])).json()

    reuse = await refresh_grant(auth, first["refresh_token"])
    assert reuse.status == 400
    assert (await reuse.json())["error"] == "invalid_grant"

    # Every token of the family is dead: both access tokens and the live successor.
    assert await introspect(auth, first["access_token"]) == {"active": False}
    assert await introspect(auth, second["access_token"]) == {"active": False}
    assert await introspect(auth, second["refresh_token"]) == {"active": False}
    assert (await refresh_grant(auth, second["refresh_token"])).status == 400


async def test_reuse_does_not_touch_other_families(auth: Client) -> None:
    first = await user_with_tokens(auth)
    other = await (
        await auth.post(
            "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
        )
    ).json()
    assert (await refresh_grant(auth, first["refresh_token"])).status == 200
    reuse = await refresh_grant(auth, first["refresh_token"])  # kills the first family only
    assert reuse.status == 400
    assert (await reuse.json())["error"] == "invalid_grant"
    assert await introspect(auth, first["access_token"]) == {"active": False}
    assert (await introspect(auth, other["access_token"]))["active"] is True


async def test_concurrent_refreshes_never_yield_two_live_successors(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    responses = await asyncio.gather(
        *(refresh_grant(auth, tokens["refresh_token"]) for _ in range(10))
    )
    assert sorted(r.status for r in responses) == [200] + [400] * 9
    bodies = [await r.json() for r in responses]
    (successor,) = [b for r, b in zip(responses, bodies, strict=True) if r.status == 200]
    assert all(b["error"] == "invalid_grant" for b in bodies if b is not successor)
    # The losers were reuses of a spent token, so the family is gone altogether: the one
    # successor is dead along with every access token of the family.
    assert await introspect(auth, successor["refresh_token"]) == {"active": False}
    assert await introspect(auth, successor["access_token"]) == {"active": False}
    assert await introspect(auth, tokens["access_token"]) == {"active": False}


async def test_a_token_issued_to_one_client_cannot_be_refreshed_by_another(auth: Client) -> None:
    tokens = await user_with_tokens(auth)  # issued to the public client
    response = await auth.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=CHAT_AUTH,
    )
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_grant"
    # A refused cross-client attempt is not a reuse: the rightful owner still can refresh.
    assert (await refresh_grant(auth, tokens["refresh_token"])).status == 200


async def test_refresh_may_narrow_but_not_widen_scope(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_SCOPES="chat,history")
    await auth.post("/users", json={"username": "alice", "password": PASSWORD})
    response = await auth.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD, "scope": "chat"},
    )
    tokens = await response.json()
    widened = await auth.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "chat history",
        },
    )
    assert widened.status == 400
    assert (await widened.json())["error"] == "invalid_scope"

    both = await (
        await auth.post(
            "/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": PASSWORD,
                "scope": "chat history",
            },
        )
    ).json()
    narrowed = await auth.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": both["refresh_token"],
            "scope": "chat",
        },
    )
    assert narrowed.status == 200
    assert (await narrowed.json())["scope"] == "chat"


async def test_refresh_tokens_are_stored_only_as_hashes(auth: Client, store: Store) -> None:
    tokens = await user_with_tokens(auth)
    client = store.client()
    try:
        keys = [key async for key in client.scan_iter("*")]
        values = [str(await client.hgetall(k)) for k in keys if await client.type(k) == "hash"]
    finally:
        await client.aclose()
    secret_part = tokens["refresh_token"][3:]
    assert not any(secret_part in key for key in keys)
    assert not any(secret_part in value for value in values)


async def test_a_refused_scope_does_not_spend_the_refresh_token(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    widened = await auth.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "chat admin",
        },
    )
    assert (await widened.json())["error"] == "invalid_scope"
    # The token is still unspent: using it now is a normal rotation, not a reuse.
    assert (await refresh_grant(auth, tokens["refresh_token"])).status == 200
    assert (await introspect(auth, tokens["access_token"]))["active"] is True

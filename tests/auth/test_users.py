"""POST /users: validation, uniqueness (also under concurrency), hashing."""

import asyncio

import pytest
from aiohttp import encode_basic_auth

from auth_service.components import COMPONENTS
from auth_service.users import SKELETONS_BACKFILLED, skeletons
from tests.auth.helpers import CHAT_AUTH, Client, register
from tests.conftest import PASSWORD, AuthClientFactory, Store


async def test_register_returns_the_user(auth: Client) -> None:
    response = await auth.post("/users", json={"username": "alice", "password": PASSWORD})
    assert response.status == 201
    body = await response.json()
    assert set(body) == {"id", "username"}
    assert body["username"] == "alice"


async def test_password_is_stored_as_argon2id(auth: Client, store: Store) -> None:
    user = await register(auth)
    client = store.client()
    try:
        stored = await client.hget(f"auth:user:{user['id']}", "password_hash")
    finally:
        await client.aclose()
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_duplicate_username_in_any_case_is_409(auth: Client) -> None:
    await register(auth, "alice")
    for name in ("alice", "ALICE"):
        response = await auth.post("/users", json={"username": name, "password": PASSWORD})
        assert response.status == 409
        assert (await response.json())["error"] == "username_taken"


async def test_concurrent_registrations_of_one_name_create_one_user(auth: Client) -> None:
    responses = await asyncio.gather(
        *(auth.post("/users", json={"username": "race", "password": PASSWORD}) for _ in range(8))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [409] * 7


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"username": "ab", "password": PASSWORD}, "username"),
        ({"username": "a" * 33, "password": PASSWORD}, "username"),
        ({"username": "bad name", "password": PASSWORD}, "username"),
        ({"username": "al!ce", "password": PASSWORD}, "username"),
        ({"username": 42, "password": PASSWORD}, "username"),
        ({"password": PASSWORD}, "username"),
        ({"username": "alice", "password": "short"}, "password"),
        ({"username": "alice", "password": "x" * 1025}, "password"),
        ({"username": "alice", "password": ["a list"]}, "password"),
        ({"username": "alice"}, "password"),
    ],
)
async def test_invalid_registration_is_400_with_description(
    auth: Client, body: dict[str, object], fragment: str
) -> None:
    response = await auth.post("/users", json=body)
    assert response.status == 400
    error = await response.json()
    assert error["error"] == "invalid_request"
    assert fragment in error["error_description"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("not json", "application/json"), ("[1, 2]", "application/json"), ("a=b", "text/plain")],
)
async def test_body_that_is_not_a_json_object_is_400(
    auth: Client, data: str, content_type: str
) -> None:
    response = await auth.post("/users", data=data, headers={"Content-Type": content_type})
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"


async def test_registrations_per_address_are_limited(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_REGISTER_MAX_PER_ADDRESS="2")
    await register(auth, "user1")
    await register(auth, "user2")
    response = await auth.post("/users", json={"username": "user3", "password": PASSWORD})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    "look_alike",
    ["aIice", "a1ice", "alice.", "al.ice", "a_lice", "-alice", "ALICE", "AIice", "A1ice"],
)
@pytest.mark.parametrize("registered", ["alice", "ALICE"])
async def test_a_look_alike_of_a_registered_name_is_409(
    auth: Client, registered: str, look_alike: str
) -> None:
    """Finding 10: names that read the same as `alice` (capital I or 1 for l, separators
    added) are refused like the name itself, whatever the letter case it was registered in."""
    await register(auth, registered)
    response = await auth.post("/users", json={"username": look_alike, "password": PASSWORD})
    assert response.status == 409
    assert (await response.json())["error"] == "username_taken"


@pytest.mark.parametrize(
    ("first", "second"), [("rnary", "mary"), ("vvalter", "walter"), ("b0b", "bob")]
)
async def test_look_alike_sequences_and_digits_are_refused_both_ways(
    auth: Client, first: str, second: str
) -> None:
    await register(auth, first)
    response = await auth.post("/users", json={"username": second, "password": PASSWORD})
    assert response.status == 409


@pytest.mark.parametrize("name", ["alicia", "alice2", "malice", "ilice"])
async def test_names_that_merely_resemble_one_are_allowed(auth: Client, name: str) -> None:
    await register(auth, "alice")
    await register(auth, name)


async def test_users_registered_before_skeletons_are_protected_after_a_restart(
    make_auth_client: AuthClientFactory, store: Store
) -> None:
    auth = await make_auth_client()
    await register(auth, "alice")
    client = store.client()
    try:  # as a database written by a version that kept no skeletons
        await client.delete(*(f"auth:skeleton:{s}" for s in skeletons("alice")))
        await client.delete(SKELETONS_BACKFILLED)
    finally:
        await client.aclose()
    restarted = await make_auth_client()
    response = await restarted.post("/users", json={"username": "a1ice", "password": PASSWORD})
    assert response.status == 409


def test_skeletons() -> None:
    for name in ("alice", "aIice", "a1ice", "alice.", "A.L.I.C.E", "ALICE"):
        assert "alice" in skeletons(name)
    assert set(skeletons("IAN")) & set(skeletons("lan"))  # refused: reads alike in many fonts
    assert not set(skeletons("ian")) & set(skeletons("lan"))


# -- GET /users/{username}: the lookup for registered clients ---------------------------------


async def test_lookup_finds_a_user_in_any_letter_case(auth: Client) -> None:
    user = await register(auth, "Alice")
    response = await auth.get("/users/aLICE", headers=CHAT_AUTH)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {"id": user["id"], "username": "Alice", "disabled": False}


async def test_lookup_of_an_unknown_name_is_404(auth: Client) -> None:
    for name in ("nobody", "x", "a" * 300, "bad name!"):
        response = await auth.get(f"/users/{name}", headers=CHAT_AUTH)
        assert response.status == 404, name
        assert (await response.json())["error"] == "not_found"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": encode_basic_auth("chat", "wrong-secret")},
        {"Authorization": encode_basic_auth("nobody", "whatever")},
        {"Authorization": "Bearer something"},
    ],
)
async def test_lookup_without_client_credentials_says_nothing(
    auth: Client, headers: dict[str, str]
) -> None:
    await register(auth)
    for name in ("alice", "nobody"):  # the same answer whether the name exists or not
        response = await auth.get(f"/users/{name}", headers=headers)
        assert response.status == 401
        assert (await response.json())["error"] == "invalid_client"


async def test_lookup_says_when_a_user_is_disabled(auth: Client) -> None:
    user = await register(auth)
    await auth.app[COMPONENTS].users.set_disabled(user["id"], True)
    body = await (await auth.get("/users/alice", headers=CHAT_AUTH)).json()
    assert body["disabled"] is True


async def test_a_refused_registration_leaves_no_claim_behind(auth: Client, store: Store) -> None:
    await register(auth, "alice")
    # "a1ice" is free as a name but looks like "alice": refused after claiming its name
    response = await auth.post("/users", json={"username": "a1ice", "password": PASSWORD})
    assert response.status == 409
    client = store.client()
    try:
        assert await client.exists("auth:username:a1ice") == 0  # released, not held
        # the registered name's claims are permanent; a half-done one would expire
        assert await client.ttl("auth:username:alice") == -1
        assert all(
            [await client.ttl(key) == -1 async for key in client.scan_iter("auth:skeleton:*")]
        )
    finally:
        await client.aclose()

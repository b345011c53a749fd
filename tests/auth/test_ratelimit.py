"""Brute-force throttling on the password grant and /login."""

from tests.auth.helpers import Client, register
from tests.conftest import PASSWORD, AuthClientFactory


async def attempt(auth: Client, username: str, password: str) -> int:
    response = await auth.post(
        "/token", data={"grant_type": "password", "username": username, "password": password}
    )
    return response.status


async def test_failures_on_one_account_end_in_429(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_FAILURES="3")
    await register(auth)
    assert [await attempt(auth, "alice", "wrong password") for _ in range(3)] == [400] * 3
    response = await auth.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    )
    # Locked even for the right password, until the window passes.
    assert response.status == 429
    assert 0 < int(response.headers["Retry-After"]) <= 300
    assert (await response.json())["error"] == "too_many_requests"
    # Another account from the same address is not affected by this account's counter.
    await register(auth, "bob")
    assert await attempt(auth, "bob", PASSWORD) == 200


async def test_unknown_accounts_are_throttled_like_known_ones(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_FAILURES="2")
    statuses = [await attempt(auth, "ghost", "wrong password") for _ in range(3)]
    assert statuses == [400, 400, 429]


async def test_failures_from_one_address_end_in_429(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS="4")
    for name in ("user1", "user2", "user3", "user4"):
        assert await attempt(auth, name, "wrong password") == 400
    assert await attempt(auth, "user5", "wrong password") == 429


async def test_login_endpoint_shares_the_throttle(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_FAILURES="2")
    await register(auth)
    for _ in range(2):
        response = await auth.post("/login", json={"username": "alice", "password": "nope-nope"})
        assert response.status == 401
    response = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 429
    assert "Retry-After" in response.headers


async def test_success_resets_the_account_counter(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_FAILURES="3")
    await register(auth)
    for _ in range(2):
        await attempt(auth, "alice", "wrong password")
    assert await attempt(auth, "alice", PASSWORD) == 200
    assert [await attempt(auth, "alice", "wrong password") for _ in range(2)] == [400, 400]
    assert await attempt(auth, "alice", PASSWORD) == 200

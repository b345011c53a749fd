"""Brute-force throttling on the password grant and /login, and the fair hashing pool."""

import asyncio

import aiohttp

from auth_service.components import COMPONENTS
from auth_service.errors import OAuthError
from auth_service.passwords import PasswordService
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


def from_address(auth: Client, address: str) -> aiohttp.ClientSession:
    """A client whose connections come from another loopback address (127.0.0.0/8 all
    reach the server), so the service sees another client address."""
    return aiohttp.ClientSession(
        base_url=auth.make_url(""),
        connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0),
    )


async def login(session: aiohttp.ClientSession, username: str, password: str) -> int:
    async with session.post(
        "/token", data={"grant_type": "password", "username": username, "password": password}
    ) as response:
        return response.status


async def test_concurrent_guesses_cannot_get_past_the_account_throttle(
    make_auth_client: AuthClientFactory,
) -> None:
    """Finding 3: 59 wrong passwords and the right one, all at once, with 5 failures
    allowed: only 5 checks may run; the rest are refused before any password is hashed."""
    auth = await make_auth_client(AUTH_LOGIN_MAX_FAILURES="5", AUTH_MAX_PENDING_HASHES="200")
    await register(auth)
    passwords = ["wrong password"] * 59
    passwords.insert(30, PASSWORD)
    async with from_address(auth, "127.0.0.2") as session:
        statuses = await asyncio.gather(*(login(session, "alice", p) for p in passwords))
    assert sum(status != 429 for status in statuses) <= 5, statuses
    assert set(statuses) <= {200, 400, 429}


async def test_concurrent_guesses_cannot_get_past_the_address_throttle(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(
        AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS="10", AUTH_MAX_PENDING_HASHES="200"
    )
    async with from_address(auth, "127.0.0.3") as session:
        statuses = await asyncio.gather(
            *(login(session, f"user{n}", "wrong password") for n in range(60))
        )
    assert sum(status != 429 for status in statuses) <= 10, statuses


async def test_successful_logins_are_limited_per_account(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_ATTEMPTS="5")
    await register(auth)
    assert [await attempt(auth, "alice", PASSWORD) for _ in range(6)] == [200] * 5 + [429]
    await register(auth, "bob")
    assert await attempt(auth, "bob", PASSWORD) == 200


async def test_successful_logins_are_limited_per_address(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="3")
    for name in ("alice", "bob", "carol", "dave"):
        await register(auth, name)
    statuses = [await attempt(auth, name, PASSWORD) for name in ("alice", "bob", "carol", "dave")]
    assert statuses == [200, 200, 200, 429]


async def test_one_account_cannot_starve_everybody_elses_logins(
    make_auth_client: AuthClientFactory,
) -> None:
    """Finding 5: 80 concurrent logins with one user's correct password from one address,
    while 20 other users log in one after another from another: none of theirs is refused.
    (Before, the flood held the whole hashing pool and the others got 503.)"""
    auth = await make_auth_client(
        AUTH_MAX_PENDING_HASHES="40", AUTH_ARGON2_TIME_COST="2", AUTH_ARGON2_MEMORY_KIB="16384"
    )
    names = [f"user{n}" for n in range(20)]
    for name in ["alice", *names]:
        await register(auth, name)

    async def one_after_another(session: aiohttp.ClientSession) -> list[int]:
        return [await login(session, name, PASSWORD) for name in names]

    async with (
        from_address(auth, "127.0.0.4") as attacker,
        from_address(auth, "127.0.0.5") as others,
    ):
        flood = asyncio.gather(*(login(attacker, "alice", PASSWORD) for _ in range(80)))
        theirs = await one_after_another(others)
        ours = await flood
    assert theirs == [200] * 20
    assert set(ours) <= {200, 429}
    assert ours.count(200) <= 20  # AUTH_LOGIN_MAX_ATTEMPTS (default) per window


async def test_the_hashing_pool_is_shared_fairly() -> None:
    passwords = PasswordService(
        time_cost=1, memory_kib=1024, parallelism=1, workers=1, max_pending=8
    )
    stored = await passwords.hash("a password")
    try:
        results = await asyncio.gather(
            *(passwords.verify(stored, "a password", owners=("user:alice",)) for _ in range(6)),
            passwords.verify(stored, "a password", owners=("user:bob",)),
            return_exceptions=True,
        )
    finally:
        passwords.close()
    refused = [r for r in results[:6] if isinstance(r, OAuthError)]
    assert results[:2] == [True, True]  # a quarter of 8
    assert [error.status for error in refused] == [429] * 4
    assert results[6] is True


async def test_a_blocked_address_cannot_lock_accounts_out(
    make_auth_client: AuthClientFactory,
) -> None:
    """An address past its failures is refused before any account counter is touched, so it
    cannot go on spending other people's login budgets for free."""
    auth = await make_auth_client(
        AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS="3", AUTH_LOGIN_MAX_ATTEMPTS="5"
    )
    await register(auth, "victim")
    async with from_address(auth, "127.0.0.6") as attacker:
        for n in range(3):
            assert await login(attacker, f"throwaway{n}", "wrong password") == 400
        for _ in range(20):
            assert await login(attacker, "victim", "wrong password") == 429
    async with from_address(auth, "127.0.0.7") as owner:
        assert await login(owner, "victim", PASSWORD) == 200


async def test_a_check_the_pool_refused_counts_nothing(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_ATTEMPTS="2")
    await register(auth)
    throttle = auth.app[COMPONENTS].throttle
    for _ in range(5):  # reserved, then refused by the hashing pool before hashing
        await throttle.release(await throttle.reserve("alice", "127.0.0.1"))
    assert [await attempt(auth, "alice", PASSWORD) for _ in range(3)] == [200, 200, 429]

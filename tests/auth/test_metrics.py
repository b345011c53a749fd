"""The auth service's `/metrics`: who may read it, and that what it counts moves with what
happens (the real service on the suite's Redis)."""

from __future__ import annotations

import pytest
from aiohttp import encode_basic_auth

from auth_service.settings import load_settings
from common.config import ConfigError
from tests.auth.helpers import (
    CHAT_AUTH,
    Client,
    introspect,
    password_grant,
    refresh_grant,
    register,
)
from tests.conftest import OTHER_CLIENT, PASSWORD, AuthClientFactory, Store
from tests.scrape import Samples, scrape

FAMILIES = {
    "auth_http_requests": "counter",
    "auth_tokens_issued": "counter",
    "auth_sessions_started": "counter",
    "auth_introspections": "counter",
    "auth_logins_refused": "counter",
    "auth_logins_throttled": "counter",
    "auth_password_hash_queue": "gauge",
}


@pytest.fixture
def store(redis_url: str) -> Store:
    """One Redis: what is counted does not depend on the store."""
    return Store(redis_url)


async def server_token(auth: Client, scope: str = "chat:server") -> str:
    response = await auth.post(
        "/token", data={"grant_type": "client_credentials", "scope": scope}, headers=CHAT_AUTH
    )
    assert response.status == 200, await response.text()
    return str((await response.json())["access_token"])


# -- who may read them -----------------------------------------------------------------------


async def test_metrics_are_closed_without_credentials(auth: Client) -> None:
    response = await auth.get("/metrics")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="metrics", Bearer realm="metrics"'
    assert response.headers["Cache-Control"] == "no-store"
    assert (await response.json())["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (encode_basic_auth(OTHER_CLIENT[0], "not its secret"), "invalid_client"),
        (encode_basic_auth("nobody", OTHER_CLIENT[1]), "invalid_client"),
        ("Bearer not-a-token", "invalid_token"),
    ],
)
async def test_bad_credentials_are_refused(auth: Client, authorization: str, error: str) -> None:
    response = await auth.get("/metrics", headers={"Authorization": authorization})
    assert response.status == 401
    assert "WWW-Authenticate" in response.headers
    body = await response.json()
    assert (body["error"], bool(body["error_description"])) == (error, True)


@pytest.mark.parametrize("client", [OTHER_CLIENT, ("chat", "chat-secret-for-tests-only")])
async def test_any_registered_client_reads_them(auth: Client, client: tuple[str, str]) -> None:
    samples = await scrape(auth, {"Authorization": encode_basic_auth(*client)})
    assert {name: samples.families.get(name) for name in FAMILIES} == FAMILIES


async def test_a_server_token_reads_them(auth: Client) -> None:
    token = await server_token(auth)
    samples = await scrape(auth, {"Authorization": f"Bearer {token}"})
    assert "auth_tokens_issued" in samples.families


@pytest.mark.parametrize("who", ["user", "client without chat:server"])
async def test_a_token_without_the_server_scope_is_forbidden(auth: Client, who: str) -> None:
    if who == "user":
        await register(auth)
        token = (await password_grant(auth))["access_token"]
    else:
        token = await server_token(auth, scope="chat")
    response = await auth.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 403
    assert (await response.json())["error"] == "insufficient_scope"


async def test_the_operator_may_open_them(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_METRICS_PUBLIC="true")
    samples = await scrape(auth, {})
    assert "auth_logins_refused" in samples.families


def test_a_bad_metrics_setting_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="AUTH_METRICS_PUBLIC"):
        load_settings({"AUTH_METRICS_PUBLIC": "maybe"})


# -- what they count -------------------------------------------------------------------------


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return after(name, **labels) - before(name, **labels)


async def test_tokens_are_counted_by_grant(auth: Client) -> None:
    await register(auth)
    before = await scrape(auth)
    tokens = await password_grant(auth)
    assert (await refresh_grant(auth, tokens["refresh_token"])).status == 200
    await server_token(auth)
    login = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    assert login.status == 200
    after = await scrape(auth)
    for grant in ("password", "refresh_token", "client_credentials"):
        assert moved(before, after, "auth_tokens_issued_total", grant=grant) == 1
    assert moved(before, after, "auth_sessions_started_total") == 1
    assert moved(before, after, "auth_logins_refused_total") == 0


async def test_refused_and_throttled_logins_are_counted(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_LOGIN_MAX_FAILURES="1")
    await register(auth)
    before = await scrape(auth)
    wrong = {"grant_type": "password", "username": "alice", "password": "wrong password"}
    assert (await auth.post("/token", data=wrong)).status == 400
    assert (await auth.post("/token", data=wrong)).status == 429
    after = await scrape(auth)
    assert moved(before, after, "auth_logins_refused_total") == 1
    assert moved(before, after, "auth_logins_throttled_total") == 1
    assert moved(before, after, "auth_tokens_issued_total", grant="password") == 0
    assert after("auth_password_hash_queue") == 0  # nothing is being hashed now


async def test_introspections_are_counted_by_result(auth: Client) -> None:
    await register(auth)
    token = (await password_grant(auth))["access_token"]
    before = await scrape(auth)
    assert (await introspect(auth, token))["active"] is True
    assert (await introspect(auth, "garbage"))["active"] is False
    after = await scrape(auth)
    assert moved(before, after, "auth_introspections_total", result="active") == 1
    assert moved(before, after, "auth_introspections_total", result="inactive") == 1


async def test_requests_are_counted_by_route_pattern_and_status(auth: Client) -> None:
    before = await scrape(auth)
    assert (await auth.get("/users/somebody")).status == 401
    assert (await auth.get("/healthz")).status == 200
    assert (await auth.get("/no/such/path")).status == 404
    assert (await auth.delete("/token")).status == 405
    after = await scrape(auth)

    def requests(method: str, route: str, status: str) -> float:
        labels = {"method": method, "route": route, "status": status}
        return moved(before, after, "auth_http_requests_total", **labels)

    assert requests("GET", "/users/{username}", "401") == 1
    assert requests("GET", "/healthz", "200") == 1
    assert requests("GET", "unmatched", "404") == 1
    assert requests("DELETE", "unmatched", "405") == 1
    routes = {labels["route"] for labels in after.labels("auth_http_requests_total")}
    assert not any("somebody" in route or "no/such" in route for route in routes)

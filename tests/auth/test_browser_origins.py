"""Pages that call the auth service from a browser (auth_service/browsers.py): CORS with
credentials for AUTH_ALLOWED_ORIGINS only; a POST from any other page is refused unread."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from auth_service.app import create_app
from auth_service.settings import DEV_BROWSER_ORIGINS, load_settings
from common.config import ConfigError
from tests.conftest import PASSWORD, auth_environ
from tests.servers import HardenedTestServer

PAGE = "http://127.0.0.1:8080"
OTHER_PAGE = "https://evil.example"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
STATE_CHANGING = ["/users", "/token", "/login", "/logout", "/revoke", "/me/revoke-all"]

Client = TestClient[Any, Any]


@pytest.fixture
async def auth(aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str) -> Client:
    settings = load_settings(auth_environ(redis_url, AUTH_ALLOWED_ORIGINS=f"{PAGE},http://x.test"))
    return await aiohttp_client(HardenedTestServer(create_app(settings), settings.http))


def assert_cors_for(response: Any, origin: str) -> None:
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers["Vary"]


def assert_no_cors(response: Any) -> None:
    assert not any(name.startswith("Access-Control-") for name in response.headers)
    assert "Origin" in response.headers["Vary"]


async def test_an_allowed_pages_preflight_is_answered_with_credentials(auth: Client) -> None:
    response = await auth.options(
        "/users",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status == 204
    assert_cors_for(response, PAGE)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


async def test_an_allowed_page_registers_signs_in_and_reads_every_answer(auth: Client) -> None:
    registered = await auth.post(
        "/users", json={"username": "alice", "password": PASSWORD}, headers={"Origin": PAGE}
    )
    assert registered.status == 201
    assert_cors_for(registered, PAGE)
    granted = await auth.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers={"Origin": PAGE},
    )
    assert granted.status == 200
    assert_cors_for(granted, PAGE)
    # Errors too, with what a person needs from them readable by the page.
    wrong = await auth.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": "wrong password"},
        headers={"Origin": PAGE},
    )
    assert wrong.status == 400
    assert_cors_for(wrong, PAGE)
    assert "Retry-After" in wrong.headers["Access-Control-Expose-Headers"]
    me = await auth.get(
        "/me",
        headers={
            "Origin": PAGE,
            "Authorization": f"Bearer {(await granted.json())['access_token']}",
        },
    )
    assert me.status == 200
    assert_cors_for(me, PAGE)


@pytest.mark.parametrize("origin", [OTHER_PAGE, "null", "http://127.0.0.1:8081", PAGE + "/"])
async def test_any_other_page_gets_no_cors_and_its_preflight_is_refused(
    auth: Client, origin: str
) -> None:
    preflight = await auth.options(
        "/token", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 403
    assert_no_cors(preflight)
    read = await auth.get("/.well-known/jwks.json", headers={"Origin": origin})
    assert read.status == 200  # public anyway; its page just cannot read it
    assert_no_cors(read)


@pytest.mark.parametrize("path", STATE_CHANGING)
async def test_a_state_changing_request_from_another_page_is_refused_unread(
    auth: Client, path: str
) -> None:
    """Form-encoded bodies need no preflight, so the refusal must not depend on one."""
    response = await auth.post(
        path,
        data={"grant_type": "password", "username": "alice", "password": PASSWORD, "token": "x"},
        headers={"Origin": OTHER_PAGE, **FORM},
    )
    assert response.status == 403
    assert (await response.json())["error"] == "forbidden_origin"
    assert_no_cors(response)


async def test_a_forged_registration_or_login_changes_nothing(auth: Client) -> None:
    forged = await auth.post(
        "/users", json={"username": "mallory", "password": PASSWORD}, headers={"Origin": "null"}
    )
    assert forged.status == 403
    # The account was not created: registering it without an Origin (curl) still works.
    assert (
        await auth.post("/users", json={"username": "mallory", "password": PASSWORD})
    ).status == 201
    login = await auth.post(
        "/login", json={"username": "mallory", "password": PASSWORD}, headers={"Origin": OTHER_PAGE}
    )
    assert login.status == 403
    assert "Set-Cookie" not in login.headers


async def test_two_origin_headers_are_believed_neither(auth: Client) -> None:
    response = await auth.post(
        "/users",
        json={"username": "alice", "password": PASSWORD},
        headers=[("Origin", PAGE), ("Origin", PAGE)],
    )
    assert response.status == 403
    assert_no_cors(response)


async def test_requests_without_origin_are_not_a_browsers_and_pass(auth: Client) -> None:
    registered = await auth.post("/users", json={"username": "alice", "password": PASSWORD})
    assert registered.status == 201
    assert "Access-Control-Allow-Origin" not in registered.headers
    assert registered.headers["Vary"] == "Origin"


def test_allowed_origins_are_exact_origins_and_default_to_none_in_production() -> None:
    settings = load_settings({"AUTH_ALLOWED_ORIGINS": "https://chat.example, http://a.test:8080"})
    assert settings.allowed_origins == {"https://chat.example", "http://a.test:8080"}
    assert load_settings({}).allowed_origins == set(DEV_BROWSER_ORIGINS)
    with pytest.raises(ConfigError) as error:
        load_settings({"AUTH_ALLOWED_ORIGINS": "https://chat.example/,*"})
    assert "AUTH_ALLOWED_ORIGINS entry 'https://chat.example/'" in str(error.value)
    assert "AUTH_ALLOWED_ORIGINS entry '*'" in str(error.value)
    production = {
        "APP_ENV": "production",
        "AUTH_CLIENTS": "chat:a-real-secret-of-sixteen",
        "AUTH_COOKIE_SECURE": "true",
    }
    assert load_settings(production).allowed_origins == frozenset()

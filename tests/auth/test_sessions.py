"""Browser sessions: login, cookie flags, fixation defence, /me, logout, introspection."""

import json
from http.cookies import SimpleCookie

import pytest
import redis.asyncio as aioredis

from auth_service.revocation import CHANNEL
from auth_service.settings import load_settings
from common.config import ConfigError
from tests.auth.helpers import CHAT_AUTH, Client, introspect, password_grant, register
from tests.conftest import PASSWORD, AuthClientFactory, Store, auth_environ

COOKIE = "chat_session"


async def login(auth: Client, username: str = "alice", password: str = PASSWORD) -> str:
    """Logs in and returns the session id the response set."""
    response = await auth.post("/login", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["Set-Cookie"])
    return cookie[COOKIE].value


async def test_login_sets_a_hardened_cookie(auth: Client) -> None:
    user = await register(auth)
    response = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 200
    body = await response.json()
    assert body["id"] == user["id"]
    assert body["username"] == "alice"
    raw = response.headers["Set-Cookie"]
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(raw)
    morsel = cookie[COOKIE]
    assert morsel["httponly"]
    assert morsel["samesite"] == "Lax"
    assert not morsel["secure"]  # development default; see the next test
    assert len(morsel.value) == 43


async def test_secure_flag_is_configurable(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_COOKIE_SECURE="true", AUTH_COOKIE_SAMESITE="Strict")
    await register(auth)
    response = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["Set-Cookie"])
    assert cookie[COOKIE]["secure"]
    assert cookie[COOKIE]["samesite"] == "Strict"


async def test_session_id_changes_at_every_login(auth: Client) -> None:
    await register(auth)
    first = await login(auth)
    second = await login(auth)
    assert first != second
    # The id from before the second login is dead.
    assert await introspect(auth, first, token_type_hint="session") == {"active": False}
    assert (await introspect(auth, second, token_type_hint="session"))["active"] is True


async def test_a_planted_session_id_is_not_adopted(auth: Client) -> None:
    await register(auth)
    planted = "P" * 43
    response = await auth.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"Cookie": f"{COOKIE}={planted}"},
    )
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["Set-Cookie"])
    assert cookie[COOKIE].value != planted
    assert await introspect(auth, planted, token_type_hint="session") == {"active": False}


async def test_me_with_the_session_cookie(auth: Client) -> None:
    user = await register(auth)
    await login(auth)
    response = await auth.get("/me")
    assert response.status == 200
    assert await response.json() == user


async def test_session_introspects_as_session(auth: Client) -> None:
    user = await register(auth)
    session_id = await login(auth)
    result = await introspect(auth, session_id, token_type_hint="session")
    assert result["active"] is True
    assert result["token_type"] == "session"
    assert result["sub"] == user["id"]
    assert result["username"] == "alice"
    assert result["sid"].startswith("s_")
    assert session_id not in str(result)  # the public sid is not the secret cookie value


async def test_cookie_from_before_logout_no_longer_works(auth: Client) -> None:
    await register(auth)
    session_id = await login(auth)
    response = await auth.post("/logout", json={})
    assert response.status == 204
    assert await introspect(auth, session_id, token_type_hint="session") == {"active": False}
    # Replaying the old cookie value by hand is refused, not treated as anonymous.
    response = await auth.get("/me", headers={"Cookie": f"{COOKIE}={session_id}"})
    assert response.status == 401
    assert "invalid_token" in response.headers["WWW-Authenticate"]


async def test_logout_without_a_session_is_harmless(auth: Client) -> None:
    assert (await auth.post("/logout", json={})).status == 204


async def test_login_with_bad_credentials(auth: Client) -> None:
    await register(auth)
    response = await auth.post("/login", json={"username": "alice", "password": "wrong password"})
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_grant"
    assert "Set-Cookie" not in response.headers


async def test_login_accepts_json_only(auth: Client) -> None:
    await register(auth)
    response = await auth.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status == 400


async def test_me_tries_bearer_before_the_cookie(auth: Client) -> None:
    await register(auth, "alice")
    await register(auth, "bob")
    await login(auth, "alice")
    bob = await password_grant(auth, "bob")
    response = await auth.get("/me", headers={"Authorization": f"Bearer {bob['access_token']}"})
    assert (await response.json())["username"] == "bob"


async def test_a_bad_bearer_does_not_fall_through_to_the_cookie(auth: Client) -> None:
    await register(auth)
    await login(auth)
    response = await auth.get("/me", headers={"Authorization": "Bearer not-a-token"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_me_without_credentials_is_401_bearer(auth: Client) -> None:
    response = await auth.get("/me")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_garbage_cookie_is_401(auth: Client) -> None:
    response = await auth.get("/me", headers={"Cookie": f"{COOKIE}=../../etc/passwd"})
    assert response.status == 401


async def test_introspection_of_a_session_requires_the_client(auth: Client) -> None:
    await register(auth)
    session_id = await login(auth)
    response = await auth.post("/introspect", data={"token": session_id})
    assert response.status == 401
    response = await auth.post("/introspect", data={"token": session_id}, headers=CHAT_AUTH)
    assert (await response.json())["active"] is True


async def test_logging_in_again_announces_the_replaced_session(auth: Client, store: Store) -> None:
    await register(auth)
    first = await login(auth)
    sid = (await introspect(auth, first, token_type_hint="session"))["sid"]
    client = aioredis.Redis.from_url(store.url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    confirmation = await pubsub.get_message(timeout=5)
    assert confirmation is not None
    assert confirmation["type"] == "subscribe"
    response = await auth.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"Cookie": f"{COOKIE}={first}"},
    )
    assert response.status == 200
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    assert json.loads(message["data"]) == {"kind": "sid", "value": sid, "reason": "logout"}
    await pubsub.aclose()
    await client.aclose()


async def test_failed_login_says_how_to_authenticate(auth: Client) -> None:
    response = await auth.post("/login", json={"username": "ghost", "password": "whatever1"})
    assert response.status == 401
    assert "WWW-Authenticate" in response.headers


async def test_logout_accepts_json_only(auth: Client) -> None:
    """Finding 9: a cross-site form (no JSON) cannot sign a user out."""
    await register(auth)
    login = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    cookie = login.cookies["chat_session"].value
    for kwargs in ({}, {"data": {"a": "b"}}):
        response = await auth.post("/logout", **kwargs)
        assert response.status == 400
    me = await auth.get("/me", headers={"Cookie": f"chat_session={cookie}"})
    assert me.status == 200  # still signed in
    assert (await auth.post("/logout", json={})).status == 204


async def test_a_request_carrying_the_session_cookie_twice_is_refused(auth: Client) -> None:
    """Finding 9: a second copy planted by another application on this host (cookies are not
    port-scoped) must not be chosen between; neither is used."""
    await register(auth)
    login = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    cookie = login.cookies["chat_session"].value
    auth.session.cookie_jar.clear()
    planted = "P" * 43
    for header in (
        f"chat_session={cookie}; chat_session={planted}",
        f"chat_session={planted}; other=1; chat_session={cookie}",
    ):
        response = await auth.get("/me", headers={"Cookie": header})
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
    assert (await auth.get("/me", headers={"Cookie": f"chat_session={cookie}"})).status == 200


def test_production_cookies_are_host_only_by_default(redis_url: str) -> None:
    settings = load_settings(
        auth_environ(
            redis_url,
            APP_ENV="production",
            AUTH_CLIENTS="chat:a-production-secret-0123",
        )
    )
    assert settings.cookie_name == "__Host-chat_session"
    assert settings.cookie_secure is True
    with pytest.raises(ConfigError, match="__Host- or __Secure- prefix needs AUTH_COOKIE_SECURE"):
        load_settings(auth_environ(redis_url, AUTH_COOKIE_NAME="__Host-x", AUTH_COOKIE_SECURE="0"))


async def test_a_host_only_cookie_is_set_for_the_whole_host_and_secure(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_COOKIE_NAME="__Host-chat_session", AUTH_COOKIE_SECURE="1")
    await register(auth)
    login = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    header = login.headers["Set-Cookie"]
    assert header.startswith("__Host-chat_session=")
    assert "Secure" in header
    assert "Path=/" in header
    assert "Domain" not in header

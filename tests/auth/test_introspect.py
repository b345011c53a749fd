"""POST /introspect (RFC 7662): caller authentication, every credential kind, inactive cases."""

import jwt
import pytest
from aiohttp import encode_basic_auth

from auth_service.components import COMPONENTS
from tests.auth.helpers import CHAT_AUTH, Client, introspect, register, user_with_tokens
from tests.conftest import OTHER_CLIENT, PASSWORD, AuthClientFactory

ACTIVE_KEYS = {
    "active", "sub", "username", "scope", "client_id", "token_type", "exp", "iat", "jti", "sid"
}  # fmt: skip


async def test_active_access_token_answer(auth: Client) -> None:
    user = await register(auth)
    tokens = await user_with_tokens_for(auth)
    result = await introspect(auth, tokens["access_token"], token_type_hint="access_token")
    assert set(result) == {*ACTIVE_KEYS, "kid"}  # an access token names its signing key
    assert result["kid"] == jwt.get_unverified_header(tokens["access_token"])["kid"]
    assert result["active"] is True
    assert result["sub"] == user["id"]
    assert result["username"] == "alice"
    assert result["token_type"] == "access_token"
    assert result["client_id"] == "public"
    assert result["exp"] > result["iat"]


async def user_with_tokens_for(auth: Client) -> dict[str, str]:
    response = await auth.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    )
    body: dict[str, str] = await response.json()
    return body


async def test_refresh_token_introspects_as_refresh_token(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    result = await introspect(auth, tokens["refresh_token"], token_type_hint="refresh_token")
    assert set(result) == ACTIVE_KEYS
    assert result["token_type"] == "refresh_token"
    assert result["username"] == "alice"


async def test_hint_cannot_make_a_refresh_token_pass_as_an_access_token(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    result = await introspect(auth, tokens["refresh_token"], token_type_hint="access_token")
    assert result["token_type"] == "refresh_token"


async def test_another_registered_client_may_introspect(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    response = await auth.post(
        "/introspect",
        data={"token": tokens["access_token"]},
        headers={"Authorization": encode_basic_auth(*OTHER_CLIENT)},
    )
    assert (await response.json())["active"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": encode_basic_auth("chat", "wrong-secret")},
        {"Authorization": encode_basic_auth("unknown", "secret")},
        {"Authorization": "Bearer something"},
    ],
)
async def test_introspection_without_valid_client_credentials_is_401(
    auth: Client, headers: dict[str, str]
) -> None:
    tokens = await user_with_tokens(auth)
    response = await auth.post(
        "/introspect", data={"token": tokens["access_token"]}, headers=headers
    )
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_client"
    assert "active" not in await response.text()


async def test_get_introspect_is_refused(auth: Client) -> None:
    response = await auth.get("/introspect?token=abc", headers=CHAT_AUTH)
    assert response.status == 405
    assert "Allow" in response.headers


async def test_duplicated_token_parameter_is_400(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    response = await auth.post(
        "/introspect",
        data=[("token", tokens["access_token"]), ("token", "other")],
        headers=CHAT_AUTH,
    )
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"


async def test_missing_token_is_400(auth: Client) -> None:
    response = await auth.post(
        "/introspect", data={"token_type_hint": "access_token"}, headers=CHAT_AUTH
    )
    assert response.status == 400


async def test_an_unknown_hint_only_widens_the_search(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    result = await introspect(auth, tokens["access_token"], token_type_hint="id_token")
    assert result["active"] is True


async def test_unauthenticated_introspection_is_401_whatever_the_body(auth: Client) -> None:
    response = await auth.post("/introspect", json={"token": "x"})
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_client"


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "rt_" + "A" * 43,
        "B" * 43,
        "x" * 100_000,
        "\u00e9\u4e2d\U0001f600",
    ],
)
async def test_anything_not_active_is_exactly_active_false(auth: Client, token: str) -> None:
    response = await auth.post("/introspect", data={"token": token}, headers=CHAT_AUTH)
    assert response.status == 200
    assert await response.json() == {"active": False}


async def test_expired_access_token_is_inactive(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client(AUTH_ACCESS_TOKEN_TTL="1", AUTH_LEEWAY="0")
    tokens = await user_with_tokens(auth)
    access = auth.app[COMPONENTS].access
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    claims["exp"] = claims["iat"] - 1
    expired = await access.sign(claims)
    assert await introspect(auth, expired) == {"active": False}


async def test_two_instances_on_one_redis_share_tokens(make_auth_client: AuthClientFactory) -> None:
    first = await make_auth_client()
    second = await make_auth_client()
    tokens = await user_with_tokens(first)
    result = await introspect(second, tokens["access_token"])
    assert result["active"] is True
    assert result["username"] == "alice"
    refreshed = await second.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status == 200
    first_jwks = await (await first.get("/.well-known/jwks.json")).json()
    second_jwks = await (await second.get("/.well-known/jwks.json")).json()
    assert first_jwks == second_jwks


async def test_client_credentials_token_introspects(auth: Client) -> None:
    response = await auth.post(
        "/token", data={"grant_type": "client_credentials"}, headers=CHAT_AUTH
    )
    token = (await response.json())["access_token"]
    result = await introspect(auth, token)
    assert result["active"] is True
    assert result["sub"] == "chat"
    assert result["username"] is None
    assert result["sid"] is None


async def test_client_token_dies_when_the_client_is_unregistered(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client()
    response = await auth.post(
        "/token", data={"grant_type": "client_credentials"}, headers=CHAT_AUTH
    )
    token = (await response.json())["access_token"]
    without_reports = await make_auth_client(AUTH_CLIENTS="reports:reports-secret-for-tests")
    response = await without_reports.post(
        "/introspect",
        data={"token": token},
        headers={"Authorization": encode_basic_auth(*OTHER_CLIENT)},
    )
    assert await response.json() == {"active": False}

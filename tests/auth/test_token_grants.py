"""POST /token: the password and client_credentials grants and RFC 6749 §5.2 errors."""

from typing import Any

import jwt
import pytest
from aiohttp import encode_basic_auth

from tests.auth.helpers import CHAT_AUTH, Client, password_grant, register, user_with_tokens
from tests.conftest import CHAT_CLIENT, PASSWORD


async def test_password_grant_issues_tokens(auth: Client) -> None:
    await register(auth)
    response = await auth.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    )
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "chat"
    assert body["refresh_token"].startswith("rt_")


async def test_access_token_is_an_eddsa_at_jwt_with_every_claim(auth: Client) -> None:
    user = await register(auth)
    tokens = await password_grant(auth)
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    assert header["kid"]
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert set(claims) == {
        "iss", "aud", "sub", "username", "scope", "iat", "exp", "jti", "sid", "client_id"
    }  # fmt: skip
    assert claims["sub"] == user["id"]
    assert claims["username"] == "alice"
    assert claims["iss"] == "http://auth.test"
    assert claims["aud"] == "chat"
    assert claims["exp"] - claims["iat"] == 900


async def test_token_verifies_against_the_published_jwks(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    jwks = await (await auth.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    jwk = next(key for key in jwks["keys"] if key["kid"] == kid)
    key = jwt.PyJWK(jwk)
    claims = jwt.decode(
        tokens["access_token"],
        key,
        algorithms=["EdDSA"],
        audience="chat",
        issuer="http://auth.test",
    )
    assert claims["username"] == "alice"


async def test_wrong_password_and_unknown_user_get_the_same_answer(auth: Client) -> None:
    await register(auth)
    answers = []
    for username, password in (("alice", "wrong password"), ("nobody", "wrong password")):
        response = await auth.post(
            "/token", data={"grant_type": "password", "username": username, "password": password}
        )
        answers.append((response.status, await response.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 400
    assert answers[0][1]["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({}, 400, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "x"}, 400, "unsupported_grant_type"),
        ({"grant_type": "password", "username": "alice"}, 400, "invalid_request"),
        ({"grant_type": "password", "password": PASSWORD}, 400, "invalid_request"),
        (
            {"grant_type": "password", "username": "alice", "password": PASSWORD, "scope": "admin"},
            400,
            "invalid_scope",
        ),
        ({"grant_type": "refresh_token"}, 400, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "rt_nope"}, 400, "invalid_grant"),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
    ],
)
async def test_token_errors_follow_rfc6749(
    auth: Client, data: dict[str, str], status: int, error: str
) -> None:
    await register(auth)
    response = await auth.post("/token", data=data)
    assert response.status == status
    body = await response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic")


async def test_token_requires_a_form_body(auth: Client) -> None:
    response = await auth.post("/token", json={"grant_type": "password"})
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"


async def test_repeated_parameter_is_refused(auth: Client) -> None:
    response = await auth.post(
        "/token",
        data=[("grant_type", "password"), ("grant_type", "client_credentials")],
    )
    assert response.status == 400
    assert "repeated" in (await response.json())["error_description"]


@pytest.mark.parametrize("how", ["basic", "body"])
async def test_client_credentials_grant(auth: Client, how: str) -> None:
    client_id, secret = CHAT_CLIENT
    if how == "basic":
        response = await auth.post(
            "/token", data={"grant_type": "client_credentials"}, headers=CHAT_AUTH
        )
    else:
        response = await auth.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
    assert response.status == 200
    body = await response.json()
    assert "refresh_token" not in body
    claims: dict[str, Any] = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == client_id
    assert claims["client_id"] == client_id
    assert claims["username"] is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": encode_basic_auth("chat", "wrong-secret")},
        {"Authorization": encode_basic_auth("nobody", "whatever")},
        {"Authorization": "Basic !!!not-base64"},
    ],
)
async def test_bad_client_credentials_are_401_invalid_client(
    auth: Client, headers: dict[str, str]
) -> None:
    response = await auth.post("/token", data={"grant_type": "client_credentials"}, headers=headers)
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_client"


async def test_bad_client_credentials_do_not_fall_back_to_public(auth: Client) -> None:
    await register(auth)
    response = await auth.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers={"Authorization": encode_basic_auth("chat", "wrong-secret")},
    )
    assert response.status == 401


async def test_naming_a_confidential_client_without_its_secret_is_refused(auth: Client) -> None:
    await register(auth)
    response = await auth.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "client_id": "chat",
        },
    )
    assert response.status == 401


async def test_password_grant_as_a_confidential_client_records_it(auth: Client) -> None:
    await register(auth)
    response = await auth.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers=CHAT_AUTH,
    )
    claims = jwt.decode(
        (await response.json())["access_token"], options={"verify_signature": False}
    )
    assert claims["client_id"] == "chat"

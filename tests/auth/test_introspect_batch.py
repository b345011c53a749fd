"""POST /introspect/batch: each answer exactly what /introspect answers for that token."""

from typing import Any

import jwt
import pytest
from aiohttp import encode_basic_auth
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_service.components import COMPONENTS
from auth_service.oauth_views import MAX_BATCH
from tests.auth.helpers import CHAT_AUTH, Client, introspect, password_grant, user_with_tokens
from tests.conftest import OTHER_CLIENT, AuthClientFactory


async def batch(auth: Client, tokens: list[Any], **headers: str) -> Any:
    response = await auth.post(
        "/introspect/batch", json={"tokens": tokens}, headers=headers or CHAT_AUTH
    )
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return (await response.json())["answers"]


def forged(token: str) -> str:
    """The token's own claims, signed by a key the service does not know."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header)


async def test_each_answer_equals_single_introspection(
    make_auth_client: AuthClientFactory,
) -> None:
    auth = await make_auth_client(AUTH_LEEWAY="0")
    alice = await user_with_tokens(auth, "alice")
    bob = await user_with_tokens(auth, "bobby")
    revoked = await password_grant(auth, "bobby")
    await auth.post("/revoke", data={"token": revoked["access_token"]})
    access = auth.app[COMPONENTS].access
    claims = jwt.decode(alice["access_token"], options={"verify_signature": False})
    expired = await access.sign({**claims, "iat": claims["iat"] - 900, "exp": claims["iat"] - 1})
    service = await auth.post(
        "/token", data={"grant_type": "client_credentials"}, headers=CHAT_AUTH
    )
    tokens = [
        alice["access_token"],
        bob["access_token"],
        revoked["access_token"],  # revoked
        expired,
        forged(alice["access_token"]),
        alice["refresh_token"],
        (await service.json())["access_token"],  # a service's token
        "garbage",
        "x" * 5000,
        alice["access_token"],  # the same token twice: answered twice
    ]
    answers = await batch(auth, tokens)
    assert answers == [await introspect(auth, token) for token in tokens]
    assert [answer["active"] for answer in answers] == [
        True, True, False, False, False, True, True, False, False, True,
    ]  # fmt: skip
    assert answers[0]["username"] == "alice"
    assert answers[1]["username"] == "bobby"


async def test_a_token_of_a_wrong_client_is_inactive(make_auth_client: AuthClientFactory) -> None:
    auth = await make_auth_client()
    response = await auth.post(
        "/token", data={"grant_type": "client_credentials"}, headers=CHAT_AUTH
    )
    token = (await response.json())["access_token"]
    without_chat = await make_auth_client(AUTH_CLIENTS="reports:reports-secret-for-tests")
    other = {"Authorization": encode_basic_auth(*OTHER_CLIENT)}
    assert await batch(without_chat, [token, token], **other) == [{"active": False}] * 2


async def test_revocation_takes_effect_at_once(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    assert (await batch(auth, [tokens["access_token"]]))[0]["active"] is True
    await auth.post("/revoke", data={"token": tokens["refresh_token"]})  # the whole family
    assert await batch(auth, [tokens["access_token"]]) == [{"active": False}]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": encode_basic_auth("chat", "wrong-secret")},
        {"Authorization": encode_basic_auth("unknown", "secret")},
        {"Authorization": "Bearer something"},
    ],
)
async def test_without_valid_client_credentials_is_401(
    auth: Client, headers: dict[str, str]
) -> None:
    tokens = await user_with_tokens(auth)
    response = await auth.post(
        "/introspect/batch", json={"tokens": [tokens["access_token"]]}, headers=headers
    )
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_client"
    assert "active" not in await response.text()


async def test_client_credentials_in_the_body_are_not_accepted(auth: Client) -> None:
    response = await auth.post(
        "/introspect/batch",
        json={"tokens": ["a.b.c"], "client_id": "chat", "client_secret": "x"},
    )
    assert response.status == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tokens": []},
        {"tokens": "a.b.c"},
        {"tokens": ["a.b.c"] * (MAX_BATCH + 1)},
        {"tokens": ["a.b.c", 1]},
        {"tokens": ["a.b.c", ""]},
        {"tokens": [None]},
        ["a.b.c"],
    ],
)
async def test_malformed_or_oversized_batches_are_400(auth: Client, body: Any) -> None:
    response = await auth.post("/introspect/batch", json=body, headers=CHAT_AUTH)
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"


async def test_a_form_body_is_400(auth: Client) -> None:
    response = await auth.post("/introspect/batch", data={"tokens": "a.b.c"}, headers=CHAT_AUTH)
    assert response.status == 400


async def test_the_largest_batch_is_answered(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    answers = await batch(auth, [tokens["access_token"]] * MAX_BATCH)
    assert len(answers) == MAX_BATCH
    assert all(answer["active"] for answer in answers)

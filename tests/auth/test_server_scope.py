"""`chat:server` (AUTH_CLIENT_SCOPES): registered clients may ask for it with
client_credentials; the password and refresh grants never grant it."""

from __future__ import annotations

import pytest

from auth_service.settings import load_settings
from common.config import ConfigError
from tests.auth.helpers import (
    CHAT_AUTH,
    Client,
    introspect,
    register,
    user_with_tokens,
)
from tests.conftest import PASSWORD


async def test_a_registered_client_gets_a_server_token(auth: Client) -> None:
    response = await auth.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "chat:server"},
        headers=CHAT_AUTH,
    )
    assert response.status == 200, await response.text()
    token = (await response.json())["access_token"]
    answer = await introspect(auth, token)
    assert answer["active"] is True
    assert answer["scope"] == "chat:server"
    assert answer["client_id"] == "chat"
    assert answer["username"] is None


async def test_the_server_scope_needs_client_authentication(auth: Client) -> None:
    response = await auth.post(
        "/token", data={"grant_type": "client_credentials", "scope": "chat:server"}
    )
    assert response.status == 401


@pytest.mark.parametrize("scope", ["chat:server", "chat chat:server"])
async def test_the_password_grant_never_grants_the_server_scope(auth: Client, scope: str) -> None:
    await register(auth)
    for headers in ({}, CHAT_AUTH):  # not even to a registered client
        response = await auth.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD,
                  "scope": scope},
            headers=headers,
        )  # fmt: skip
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_scope"


async def test_the_refresh_grant_never_grants_the_server_scope(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    response = await auth.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
              "scope": "chat:server"},
    )  # fmt: skip
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_scope"
    # the refused scope did not spend the token, and the grant's scope is unchanged
    response = await auth.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert (await response.json())["scope"] == "chat"


async def test_metadata_lists_the_client_scopes(auth: Client) -> None:
    meta = await (await auth.get("/.well-known/oauth-authorization-server")).json()
    assert meta["scopes_supported"] == ["chat", "chat:server"]


def test_a_client_scope_may_not_also_be_a_user_scope() -> None:
    with pytest.raises(ConfigError, match="AUTH_CLIENT_SCOPES"):
        load_settings({"AUTH_SCOPES": "chat,chat:server"})

"""Small steps most auth tests take: register a user, get tokens, introspect."""

from __future__ import annotations

from typing import Any

from aiohttp import encode_basic_auth
from aiohttp.test_utils import TestClient

from tests.conftest import CHAT_CLIENT, PASSWORD

Client = TestClient[Any, Any]
CHAT_AUTH = {"Authorization": encode_basic_auth(*CHAT_CLIENT)}


async def register(
    client: Client, username: str = "alice", password: str = PASSWORD
) -> dict[str, Any]:
    response = await client.post("/users", json={"username": username, "password": password})
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def password_grant(
    client: Client, username: str = "alice", password: str = PASSWORD, **extra: str
) -> dict[str, Any]:
    response = await client.post(
        "/token",
        data={"grant_type": "password", "username": username, "password": password, **extra},
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def refresh_grant(client: Client, refresh_token: str) -> Any:
    return await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


async def introspect(client: Client, token: str, **extra: str) -> dict[str, Any]:
    response = await client.post("/introspect", data={"token": token, **extra}, headers=CHAT_AUTH)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def user_with_tokens(client: Client, username: str = "alice") -> dict[str, Any]:
    await register(client, username)
    return await password_grant(client, username)

"""Hostile bodies and parameters get the documented 400 or inactive answer, never a 500."""

import logging

import pytest

from auth_service.app import MAX_BODY
from tests.auth.helpers import Client, introspect

# Deep enough to exhaust the JSON parser's recursion, small enough for the body limit.
NESTED = "[" * 100_000


@pytest.mark.parametrize("path", ["/login", "/users"])
async def test_deeply_nested_json_is_a_400(
    auth: Client, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(NESTED) < MAX_BODY
    response = await auth.post(path, data=NESTED, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_request",
        "error_description": "the body is not valid JSON",
    }
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_an_over_long_token_is_inactive(auth: Client) -> None:
    # JWT-shaped, but longer than any token this service issues or accepts.
    token = "a" * 2000 + "." + "b" * 2000 + "." + "c" * 200
    assert await introspect(auth, token) == {"active": False}

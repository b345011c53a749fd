"""Paths and methods the chat service does not have answer in JSON, as the auth service's do."""

from __future__ import annotations

from tests.chat.helpers import Stack


async def test_an_unknown_path_is_a_json_404(stack: Stack) -> None:
    async with stack.a.get("/nope") as response:
        assert response.status == 404
        assert response.content_type == "application/json"
        assert (await response.json())["error"] == "not_found"


async def test_a_wrong_method_is_a_json_405_with_allow(stack: Stack) -> None:
    async with stack.a.post("/healthz") as response:
        assert response.status == 405
        assert response.content_type == "application/json"
        assert (await response.json())["error"] == "method_not_allowed"
        assert "GET" in response.headers["Allow"]

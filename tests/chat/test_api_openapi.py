"""The chat HTTP API's OpenAPI document against the live services.

`docs/chat-openapi.yaml` is the source and `service/openapi.json` the copy the chat service
ships and serves at `/openapi.json`. Schemathesis generates requests from the document and
sends them to a real chat instance (and the real auth service behind it) on the suite's
Redis, with a working credential: no request may cause a 5xx, and every response must be
documented (status, media type, body, headers); without a credential, or with a bad one,
each operation answers 401.
"""

from __future__ import annotations

import base64
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from aiohttp.test_utils import TestClient

from auth_service.app import create_app as create_auth_app
from auth_service.settings import load_settings as load_auth_settings
from common.openapi import RESOURCE, render
from service.app import create_app as create_chat_app
from service.settings import load_settings as load_chat_settings
from tests.chat.conftest import ChatFactory, chat_environ
from tests.conftest import CHAT_CLIENT, PASSWORD, auth_environ
from tests.live import LiveApp
from tests.openapi_runs import CONFORMANCE, config, run_settings

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "docs" / "chat-openapi.yaml"
COPY = ROOT / "service" / RESOURCE
DOCUMENT: dict[str, Any] = json.loads(COPY.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "patch")
CHECKS = CONFORMANCE
RUN = run_settings(25)
CONFIG = config(7662)
BASIC = "Basic " + base64.b64encode(":".join(CHAT_CLIENT).encode()).decode()


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


class LiveStack:
    """The auth service and one chat instance, live; alice owns `private:plans` (the
    document's example room), bob is a member."""

    def __init__(self, redis_url: str) -> None:
        auth_settings = load_auth_settings(auth_environ(redis_url))
        self.auth = LiveApp(lambda: create_auth_app(auth_settings), auth_settings.http, name="auth")
        self.chat: LiveApp | None = None
        self.tokens: dict[str, str] = {}

    def start(self) -> None:
        self.auth.start()
        chat_settings = load_chat_settings(chat_environ(self._redis_url, self.auth.url))
        self.chat = LiveApp(lambda: create_chat_app(chat_settings), chat_settings.http, name="chat")
        self.chat.start()
        for name in ("alice", "bob"):
            created = requests.post(
                f"{self.auth.url}/users", json={"username": name, "password": PASSWORD}, timeout=10
            )
            assert created.status_code == 201, created.text
            self.tokens[name] = self._token(
                {"grant_type": "password", "username": name, "password": PASSWORD}, {}
            )
        self.tokens["server"] = self._token(
            {"grant_type": "client_credentials", "scope": "chat:server"}, {"Authorization": BASIC}
        )
        room = requests.post(
            f"{self.chat.url}/api/rooms",
            json={"room": "private:plans"},
            headers=self.bearer("alice"),
            timeout=10,
        )
        assert room.status_code == 201, room.text

    def _token(self, form: dict[str, str], headers: dict[str, str]) -> str:
        issued = requests.post(f"{self.auth.url}/token", data=form, headers=headers, timeout=10)
        assert issued.status_code == 200, issued.text
        return str(issued.json()["access_token"])

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def stop(self) -> None:
        if self.chat is not None:
            self.chat.stop()
        self.auth.stop()

    @property
    def url(self) -> str:
        assert self.chat is not None
        return self.chat.url


@pytest.fixture
def live(redis_url: str) -> Iterator[LiveStack]:
    stack = LiveStack(redis_url)
    stack._redis_url = redis_url
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


schema = schemathesis.openapi.from_path(COPY, config=CONFIG)


# -- the document itself ---------------------------------------------------------------------


def test_the_shipped_json_is_generated_from_the_yaml() -> None:
    expected = render(yaml.safe_load(SOURCE.read_text(encoding="utf-8")))
    assert COPY.read_text(encoding="utf-8") == expected, (
        "service/openapi.json is stale: run `python -m service.openapi`"
    )


def test_the_document_is_valid_openapi_3_1() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    assert [str(error) for error in OPENAPI_31_VALIDATOR.iter_errors(DOCUMENT)] == []


def test_the_json_copy_is_package_data() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    assert RESOURCE in tool["setuptools"]["package-data"]["service"]


async def test_the_service_serves_the_document(make_chat: ChatFactory) -> None:
    chat: TestClient[Any, Any] = await make_chat()
    response = await chat.get("/openapi.json")
    assert response.status == 200
    assert await response.json() == DOCUMENT


async def test_every_api_route_is_documented(make_chat: ChatFactory) -> None:
    chat: TestClient[Any, Any] = await make_chat()
    served = {
        f"{route.method} {route.resource.canonical}"
        for route in chat.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical.startswith(("/api/", "/openapi.json"))
    }
    assert served == {f"{method} {path}" for method, path, _ in _operations()}


# -- generated requests ----------------------------------------------------------------------


@schema.parametrize()
@RUN
@pytest.mark.parametrize("who", ["alice", "server"])
def test_every_response_matches_the_document(
    case: schemathesis.Case, live: LiveStack, who: str
) -> None:
    headers = {} if case.operation.path == "/openapi.json" else live.bearer(who)
    case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS)


@pytest.mark.parametrize(
    ("method", "path"), [(m, p) for m, p, _ in _operations() if p != "/openapi.json"]
)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", BASIC])
def test_every_operation_refuses_a_missing_or_bad_credential(
    live: LiveStack, method: str, path: str, authorization: str | None
) -> None:
    url = live.url + path.replace("{room}", "private:plans").replace("{username}", "bob")
    headers = {} if authorization is None else {"Authorization": authorization}
    body = {"room": "private:x", "text": "hi"} if method in ("POST", "PUT") else None
    response = requests.request(method, url, json=body, headers=headers, timeout=10)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == (
        "unauthorized" if authorization is None or authorization == BASIC else "invalid_token"
    )

"""Every chat instance serves the web client (service/web/pages.py): the page with its
security headers, its files from memory only, and where the page finds the auth service."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from common.config import ConfigError
from service.settings import load_settings
from service.web.pages import STATIC
from tests.chat.conftest import ChatFactory
from tests.conftest import Store

ROOT = Path(__file__).resolve().parents[2]
IMPORT = re.compile(r'^import .* from "\./([a-z]+\.js)";$', re.M)


@pytest.fixture
def store(redis_url: str) -> Store:
    """Serving files does not depend on the store: one Redis is enough."""
    return Store(redis_url)


async def test_the_page_is_served_at_the_root_with_a_strict_policy(make_chat: ChatFactory) -> None:
    chat: TestClient[Any, Any] = await make_chat(CHAT_PUBLIC_AUTH_URL="https://auth.example/")
    response = await chat.get("/", headers={"Host": "chat.example:8443"})
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.charset == "utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == "'none'"
    assert policy["connect-src"].split() == [
        "'self'",
        "https://auth.example",
        "ws://chat.example:8443",
        "wss://chat.example:8443",
    ]
    page = await response.text()
    # No inline script or style: each script names its file.
    assert re.findall(r"<script[^>]*>", page) == ['<script type="module" src="/static/js/main.js">']
    assert "<style" not in page
    assert " style=" not in page
    assert " on" not in re.sub(r'"[^"]*"', "", page)  # no onclick= and the like


async def test_a_host_header_that_is_not_a_host_stays_out_of_the_policy(
    make_chat: ChatFactory,
) -> None:
    chat: TestClient[Any, Any] = await make_chat()
    response = await chat.get("/", headers={"Host": "a b;script-src *"})
    assert "script-src *" not in response.headers["Content-Security-Policy"]
    assert "connect-src 'self' http://" in response.headers["Content-Security-Policy"]


async def test_every_file_the_page_names_is_served_with_its_type(make_chat: ChatFactory) -> None:
    chat: TestClient[Any, Any] = await make_chat()
    page = await (await chat.get("/")).text()
    wanted = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    for script in (STATIC / "js").glob("*.js"):
        wanted += [f"/static/js/{name}" for name in IMPORT.findall(script.read_text())]
    assert "/static/js/chat.js" in wanted
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in set(wanted):
        response = await chat.get(path)
        assert response.status == 200, path
        assert response.content_type == types[Path(path).suffix], path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert await response.read() == (STATIC / path.removeprefix("/static/")).read_bytes()


@pytest.mark.parametrize(
    "path",
    ["/static/nothing.js", "/static/../pages.py", "/static/%2e%2e/pages.py", "/static/js"],
)
async def test_nothing_else_is_served_from_static(make_chat: ChatFactory, path: str) -> None:
    chat: TestClient[Any, Any] = await make_chat()
    response = await chat.get(path)
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_the_page_learns_the_auth_services_public_url(make_chat: ChatFactory) -> None:
    chat: TestClient[Any, Any] = await make_chat(CHAT_PUBLIC_AUTH_URL="https://auth.example")
    response = await chat.get("/web/config.json")
    assert response.status == 200
    assert await response.json() == {
        "auth_url": "https://auth.example",
        "max_text": 4096,
        "ws_urls": [],
    }


async def test_the_page_may_move_its_socket_to_the_instances_named(
    make_chat: ChatFactory,
) -> None:
    sockets = "ws://chat-a.example:8080/ws,wss://chat-b.example/ws"
    chat: TestClient[Any, Any] = await make_chat(CHAT_WEB_SOCKET_URLS=sockets)
    assert (await (await chat.get("/web/config.json")).json())["ws_urls"] == sockets.split(",")
    policy = (await chat.get("/")).headers["Content-Security-Policy"]
    assert "ws://chat-a.example:8080 wss://chat-b.example" in policy


def test_web_socket_urls_must_be_web_socket_urls() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"CHAT_WEB_SOCKET_URLS": "http://a.example/ws,ws://b.example/ws x"})
    assert "CHAT_WEB_SOCKET_URLS entry 'http://a.example/ws'" in str(error.value)
    assert "CHAT_WEB_SOCKET_URLS entry 'ws://b.example/ws x'" in str(error.value)


def test_the_public_auth_url_defaults_to_auth_url() -> None:
    settings = load_settings({"AUTH_URL": "http://auth:8081"})
    assert settings.public_auth_url == "http://auth:8081"
    assert load_settings({"CHAT_PUBLIC_AUTH_URL": "https://a.example/"}).public_auth_url == (
        "https://a.example"
    )


def test_the_package_ships_every_file_of_the_client() -> None:
    """A non-editable install (the container image) has only what package-data names."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["service"]
    files = [p.relative_to(ROOT / "service").as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files
    for name in files:
        assert any(_glob_matches(name, pattern) for pattern in patterns), name


def _glob_matches(name: str, pattern: str) -> bool:
    """setuptools' glob: `*` stays within one directory."""
    parts, wanted = name.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(map(fnmatch.fnmatch, parts, wanted))

"""The OpenAPI document against the live service.

`docs/openapi.yaml` is the source and `auth_service/openapi.json` the copy the service ships
and serves at `/openapi.json`. Schemathesis generates requests from the document and sends
them to the real auth service on the suite's Redis: no request may cause a 5xx, every
response must be documented (status, media type, body, headers), and every protected
operation must refuse a missing or invalid credential.

Schemathesis' pytest integration is synchronous and makes real HTTP calls, so the service
runs in a thread with its own event loop, not in the test's loop.
"""

from __future__ import annotations

import base64
import fnmatch
import itertools
import json
import tomllib
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from aiohttp.test_utils import TestClient
from schemathesis.specs.openapi.checks import ignored_auth

from auth_service import openapi
from auth_service.app import create_app
from auth_service.settings import load_settings
from tests.conftest import CHAT_CLIENT, PASSWORD, auth_environ
from tests.live import LiveApp
from tests.openapi_runs import CONFORMANCE, config, run_settings

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "docs" / "openapi.yaml"
COPY = ROOT / "auth_service" / "openapi.json"
DOCUMENT: dict[str, Any] = json.loads(COPY.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
FORM = "application/x-www-form-urlencoded"

# `ignored_auth` acts on 2xx answers of protected operations: it repeats the request without
# the credential and with an invalid one, and both must be refused with 401 or 403.
CHECKS = [*CONFORMANCE, ignored_auth]

RUN = run_settings(50)
CONFIG = config(6749)
CHAT_BASIC = "Basic " + base64.b64encode(":".join(CHAT_CLIENT).encode()).decode()
# The user the document's examples name, so the examples reach the success answers.
EXAMPLE_USER = {"username": "alice", "password": PASSWORD}


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _protected(operation: dict[str, Any]) -> bool:
    """Requires a credential: security is declared and none of its alternatives is `{}`."""
    security = operation.get("security", DOCUMENT.get("security", []))
    return bool(security) and all(requirement for requirement in security)


PROTECTED = {op["operationId"]: f"{m} {p}" for m, p, op in _operations() if _protected(op)}


class LiveAuthService(LiveApp):
    """The real auth service on 127.0.0.1 (a free port), in a thread with its own loop."""

    def __init__(self, environ: dict[str, str]) -> None:
        settings = load_settings(environ)
        super().__init__(lambda: create_app(settings), settings.http, name="auth-service")
        self._names = itertools.count()

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kwargs)

    def register(self, username: str, password: str = PASSWORD) -> None:
        created = self.post("/users", json={"username": username, "password": password})
        assert created.status_code == 201, created.text

    def credentials(self, operation_id: str) -> dict[str, str]:
        """Working credentials for a protected operation: the registered client for
        introspection; for the others a new user's access token or session cookie, by turns
        (new each time, since the operation may revoke it or change the password)."""
        if operation_id in ("introspect", "introspectBatch", "lookupUser", "metrics"):
            return {"Authorization": CHAT_BASIC}
        n = next(self._names)
        username = f"user{n}"
        self.register(username)
        if n % 2:
            login = self.post("/login", json={"username": username, "password": PASSWORD})
            assert login.status_code == 200, login.text
            cookie: SimpleCookie = SimpleCookie(login.headers["Set-Cookie"])
            return {"Cookie": f"chat_session={cookie['chat_session'].value}"}
        grant = {"grant_type": "password", "username": username, "password": PASSWORD}
        issued = self.post("/token", data=grant)
        assert issued.status_code == 200, issued.text
        return {"Authorization": f"Bearer {issued.json()['access_token']}"}


@pytest.fixture
def live_auth(redis_url: str) -> Iterator[LiveAuthService]:
    # auth_environ raises the per-address registration and login limits, since every request
    # here comes from 127.0.0.1; the per-account throttle keeps its default, so 429 answers
    # are still produced (and must match the document).
    service = LiveAuthService(auth_environ(redis_url))
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def example_user(live_auth: LiveAuthService) -> None:
    live_auth.register(EXAMPLE_USER["username"], EXAMPLE_USER["password"])


@pytest.fixture
def auth_api(live_auth: LiveAuthService) -> schemathesis.BaseSchema:
    """The document as the running service serves it."""
    return schemathesis.openapi.from_url(f"{live_auth.url}/openapi.json", config=CONFIG)


# The generated tests are collected from the shipped copy, one test per operation:
# schemathesis 4.32's fixture-based loader (`schemathesis.pytest.from_fixture`) fails on
# pytest 9.2, which no longer has the `Node._nodeid` it rewrites.
# `test_the_service_serves_the_document` proves the service serves exactly this document.
schema = schemathesis.openapi.from_path(COPY, config=CONFIG)


# -- the document itself ---------------------------------------------------------------------


def test_the_shipped_json_is_generated_from_the_yaml() -> None:
    expected = openapi.render(yaml.safe_load(SOURCE.read_text(encoding="utf-8")))
    assert COPY.read_text(encoding="utf-8") == expected, (
        "auth_service/openapi.json is stale: run `python -m auth_service.openapi`"
    )


def test_the_document_is_valid_openapi_3_1() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    assert [str(error) for error in OPENAPI_31_VALIDATOR.iter_errors(DOCUMENT)] == []


def _examples() -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every (where, schema, example) pair of the document's request and response bodies."""
    for method, path, operation in _operations():
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += [(status, response) for status, response in operation["responses"].items()]
        for where, body in bodies:
            body = _resolve(body)
            for media_type, media in body.get("content", {}).items():
                label = f"{method} {path} {where} {media_type}"
                if "example" in media:
                    yield label, media["schema"], media["example"]
                for name, example in media.get("examples", {}).items():
                    yield f"{label} ({name})", media["schema"], example["value"]


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in item:
        return item
    target: Any = DOCUMENT
    for part in item["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(target)


def test_the_examples_match_their_schemas() -> None:
    import jsonschema_rs

    wrong = {
        where: [str(error) for error in errors]
        for where, schema, example in _examples()
        if (
            errors := list(
                jsonschema_rs.Draft202012Validator(
                    {**schema, "components": DOCUMENT["components"]}
                ).iter_errors(example)
            )
        )
    }
    assert wrong == {}
    assert len(list(_examples())) >= 20


def test_the_json_copy_is_package_data() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    patterns = tool.get("setuptools", {}).get("package-data", {})
    declared = [*patterns.get("auth_service", []), *patterns.get("*", [])]
    manifest = ROOT / "MANIFEST.in"
    listed = manifest.exists() and openapi.RESOURCE in manifest.read_text(encoding="utf-8")
    assert listed or any(fnmatch.fnmatch(openapi.RESOURCE, pattern) for pattern in declared)


async def test_every_route_is_documented(auth: TestClient[Any, Any]) -> None:
    served = {
        f"{route.method} {route.resource.canonical}"
        for route in auth.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert served == {f"{method} {path}" for method, path, _ in _operations()}


def test_the_service_serves_the_document(live_auth: LiveAuthService) -> None:
    response = requests.get(f"{live_auth.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == DOCUMENT


def test_the_protected_operations_are_the_expected_ones() -> None:
    assert sorted(PROTECTED.values()) == [
        "GET /me",
        "GET /metrics",
        "GET /users/{username}",
        "POST /introspect",
        "POST /introspect/batch",
        "POST /me/password",
        "POST /me/revoke-all",
    ]


# -- generated requests ----------------------------------------------------------------------


@schema.parametrize()
@RUN
def test_every_response_matches_the_document(
    case: schemathesis.Case, live_auth: LiveAuthService, example_user: None
) -> None:
    case.call_and_validate(base_url=live_auth.url, checks=CHECKS)


@schema.include(operation_id=list(PROTECTED)).parametrize()
@RUN
def test_protected_operations_with_a_working_credential(
    case: schemathesis.Case, live_auth: LiveAuthService
) -> None:
    # With a working credential the 2xx answers are reachable, and `ignored_auth` repeats
    # each of them without the credential and with a wrong one.
    credentials = live_auth.credentials(case.operation.definition.raw["operationId"])
    if "Cookie" in credentials and case.headers:
        # Any Authorization header, even one that is not Bearer, would blur which credential
        # was tried and which ones `ignored_auth` removes.
        case.headers.pop("Authorization", None)
    case.call_and_validate(base_url=live_auth.url, headers=credentials, checks=CHECKS)


# -- missing credentials, explicitly ---------------------------------------------------------


def _example_body(operation: dict[str, Any]) -> Any:
    for media in operation.get("requestBody", {}).get("content", {}).values():
        if "example" in media:
            return media["example"]
    return None


def _example_path(operation: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: p["example"] for p in operation.get("parameters", ()) if p["in"] == "path"}


@pytest.mark.parametrize("operation_id", sorted(PROTECTED))
def test_a_protected_operation_refuses_a_missing_credential(
    operation_id: str,
    live_auth: LiveAuthService,
    auth_api: schemathesis.BaseSchema,
    example_user: None,
) -> None:
    operation = auth_api.find_operation_by_label(PROTECTED[operation_id])
    assert operation is not None
    body = _example_body(operation.definition.raw)
    path = _example_path(operation.definition.raw)
    case = (
        operation.Case(path_parameters=path or None) if body is None else operation.Case(body=body)
    )

    refused = case.call()
    assert refused.status_code == 401, refused.text
    assert "www-authenticate" in refused.headers
    case.validate_response(refused, checks=CONFORMANCE)

    # The same request with a credential is accepted: the 401 was about the credential.
    accepted = case.call(headers=live_auth.credentials(operation_id))
    assert 200 <= accepted.status_code < 300, accepted.text
    case.validate_response(accepted, checks=CONFORMANCE)


def test_client_credentials_refuses_a_missing_client(
    live_auth: LiveAuthService, auth_api: schemathesis.BaseSchema
) -> None:
    operation = auth_api.find_operation_by_label("POST /token")
    assert operation is not None
    case = operation.Case(body={"grant_type": "client_credentials"})

    refused = case.call()
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"] == ['Basic realm="auth"']
    case.validate_response(refused, checks=CONFORMANCE)

    accepted = case.call(headers={"Authorization": CHAT_BASIC})
    assert accepted.status_code == 200, accepted.text
    case.validate_response(accepted, checks=CONFORMANCE)


# -- real credentials, whose answers generated requests cannot reach ---------------------------


def test_real_credentials_get_the_documented_answers(
    live_auth: LiveAuthService, auth_api: schemathesis.BaseSchema
) -> None:
    """A password grant, a refresh, a client_credentials grant and a login, then each of
    their credentials introspected (one `oneOf` branch each) and revoked: every answer
    must match the document."""

    def call(label: str, body: dict[str, Any], **kwargs: Any) -> Any:
        operation = auth_api.find_operation_by_label(label)
        assert operation is not None
        case = operation.Case(body=body)
        response = case.call(**kwargs)
        assert 200 <= response.status_code < 300, response.text
        case.validate_response(response, checks=CONFORMANCE)
        return response

    basic = {"Authorization": CHAT_BASIC}
    call("POST /users", dict(EXAMPLE_USER))
    granted = call("POST /token", {"grant_type": "password", **EXAMPLE_USER}).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": granted["refresh_token"]}
    refreshed = call("POST /token", refresh).json()
    client = call("POST /token", {"grant_type": "client_credentials"}, headers=basic).json()
    login = call("POST /login", dict(EXAMPLE_USER))
    session_id = SimpleCookie(login.headers["set-cookie"][0])["chat_session"].value

    credentials = {
        "access_token": refreshed["access_token"],
        "refresh_token": refreshed["refresh_token"],
        "session": session_id,
    }
    for kind, token in credentials.items():
        body = {"token": token, "token_type_hint": kind}
        answer = call("POST /introspect", body, headers=basic).json()
        assert (answer["active"], answer["token_type"]) == (True, kind)
    answer = call("POST /introspect", {"token": client["access_token"]}, headers=basic).json()
    assert (answer["active"], answer["username"]) == (True, None)

    call("POST /revoke", {"token": refreshed["refresh_token"]})
    answer = call("POST /introspect", {"token": refreshed["access_token"]}, headers=basic)
    assert answer.json() == {"active": False}


# -- known bugs, kept reproducible (each names what the document and docs/auth.md promise) ----


def _assert_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["error"] == error


def test_a_username_with_a_trailing_newline_is_refused(live_auth: LiveAuthService) -> None:
    response = live_auth.post("/users", json={"username": "alice\n", "password": PASSWORD})
    _assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_a_form_body_that_is_not_utf8_is_a_bad_request(
    path: str, live_auth: LiveAuthService
) -> None:
    headers = {"Content-Type": FORM, "Authorization": CHAT_BASIC}
    response = live_auth.post(path, data=b"grant_type=password&token=\xff", headers=headers)
    _assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    ("path", "media_type", "body"),
    [
        ("/token", FORM, b"grant_type=password"),
        ("/users", "application/json", b"{}"),
        ("/login", "application/json", b"{}"),
    ],
)
def test_a_body_in_an_unknown_charset_is_a_bad_request(
    path: str, media_type: str, body: bytes, live_auth: LiveAuthService
) -> None:
    headers = {"Content-Type": f"{media_type}; charset=nope"}
    response = live_auth.post(path, data=body, headers=headers)
    _assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_non_ascii_basic_credentials_are_refused(path: str, live_auth: LiveAuthService) -> None:
    headers = {"Content-Type": FORM, "Authorization": b"Basic Y2hhdDp4\xe9"}
    response = live_auth.post(path, data={"grant_type": "password", "token": "x"}, headers=headers)
    _assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="auth"'

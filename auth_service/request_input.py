"""What every auth handler reads from a request: the app's parts, the client's address, and
form or JSON bodies held to the rules of docs/auth.md."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from auth_service.components import COMPONENTS, AuthComponents
from auth_service.errors import invalid_request

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"


def parts_of(request: web.Request) -> AuthComponents:
    return request.app[COMPONENTS]


def address_of(request: web.Request) -> str:
    return request.remote or "unknown"


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """A form-encoded body in which no parameter appears twice (RFC 6749 §3.1)."""
    if request.content_type != FORM:
        raise invalid_request(f"the body must be {FORM}")
    try:
        form = await request.post()
    except (UnicodeDecodeError, LookupError) as exc:  # bad bytes, or an unknown charset
        raise invalid_request("the body is not text in a known encoding") from exc
    for name in form:
        values = form.getall(name)
        if len(values) > 1:
            raise invalid_request(f"parameter {name!r} must not be repeated")
        if not isinstance(values[0], str):
            raise invalid_request(f"parameter {name!r} must be text")
    return form  # type: ignore[return-value]


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise invalid_request("the body must be application/json")
    try:
        body = await request.json()
    # Bad JSON or bytes, an unknown charset, or nesting deeper than the parser recurses.
    except (ValueError, LookupError, RecursionError) as exc:
        raise invalid_request("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise invalid_request("the body must be a JSON object")
    return body

"""What each credential the auth service issues looks like, and how requests carry them.

Defined once for both services: the auth service issues and parses these shapes, the chat
service refuses anything else without spending a request on it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import unquote

MAX_TOKEN_LENGTH = 4096
# header.payload.signature, base64url without padding (the signature may be empty in a
# forgery: it is refused by verification, not by shape).
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
# rt_<family: 32 hex>.<256 random bits>; or, issued before the family moved into the token,
# rt_<256 random bits> (still honoured: see auth_service/refresh.py).
REFRESH_SHAPE = re.compile(r"^rt_(?:[0-9a-f]{32}\.)?[A-Za-z0-9_-]{43}$")
SESSION_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 256 random bits, base64url

_SHAPES = {"access_token": JWT_SHAPE, "refresh_token": REFRESH_SHAPE, "session": SESSION_SHAPE}


def looks_like(kind: str, value: str) -> bool:
    """Whether `value` has the shape of a credential of `kind` (access_token, refresh_token,
    session); anything longer than `MAX_TOKEN_LENGTH` does not."""
    shape = _SHAPES.get(kind)
    return shape is not None and len(value) <= MAX_TOKEN_LENGTH and bool(shape.fullmatch(value))


def looks_like_jwt(token: str) -> bool:
    return looks_like("access_token", token)


def looks_like_refresh_token(token: str) -> bool:
    return looks_like("refresh_token", token)


def looks_like_session_id(value: str) -> bool:
    return looks_like("session", value)


def bearer_offset(authorization: str | None) -> int | None:
    """Where the credential starts in an `Authorization: Bearer <credential>` value (RFC 6750
    §2.1, scheme in any letter case); None when the header is absent or another scheme."""
    if authorization is None or authorization[:7].lower() != "bearer ":
        return None
    return len(authorization) - len(authorization[7:].lstrip())


def cookie_values(cookie_headers: Iterable[str], name: str) -> list[str]:
    """Every value the `Cookie` headers give `name`, in order. Parsers that keep one value per
    name (the last, or the first) hide a second copy planted by another site on this host
    (cookies are not port-scoped): callers refuse a credential cookie that appears twice."""
    values = []
    for header in cookie_headers:
        for pair in header.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key == name:
                values.append(value.strip().strip('"'))
    return values


def basic_credentials(encoded: str) -> tuple[str, str] | None:
    """The (id, secret) of HTTP Basic credentials (the header's value after `Basic `);
    None when malformed. RFC 6749 §2.3.1: both were form-urlencoded before Basic encoding."""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, ValueError):  # ValueError: non-ASCII in the header
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote(client_id), unquote(secret)

"""The revocation events the auth service publishes and the chat service acts on.

Defined once for both: a chat service listening on another channel, or reading another
shape, would keep revoked sockets open without a single error. An event is JSON
`{"kind": "jti" | "sid" | "user" | "kid", "value": ..., "reason": ...}` on `CHANNEL`.
"""

from __future__ import annotations

import json

CHANNEL = "auth:revocations"
# event kind -> the introspection answer's field that names what was revoked
FIELDS = {"jti": "jti", "sid": "sid", "user": "sub", "kid": "kid"}


def encode(kind: str, value: str, reason: str) -> str:
    if kind not in FIELDS:
        raise ValueError(f"no revocation event kind {kind!r}")
    return json.dumps({"kind": kind, "value": value, "reason": reason})


def decode(payload: bytes | str) -> tuple[str, str] | None:
    """(introspection field, value) that the event revokes; None if it is malformed."""
    try:
        event = json.loads(payload)
        field, value = FIELDS.get(event["kind"]), event["value"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if field is None or not isinstance(value, str):
        return None
    return field, value

"""Centrifugo's client protocol v2, JSON encoding (docs/centrifugo.md): commands in, replies
and pushes out, and our room messages as its publications.

A frame carries one or more commands, one JSON object per line. A command has an `id` (its
reply echoes it) and one method field whose value is that method's request; a command with
neither is the client's answer to a ping. `bytes` fields of the schema (`data`,
`conn_info`) carry JSON as it is, not base64.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from common.room_names import ROOM
from service.native.frames import MAX_KEY_LENGTH, SURROGATE
from service.rooms.messages import RoomMessage

MAX_COMMANDS = 100  # commands one frame may carry (an SDK batches its subscriptions)
MAX_ID = 2**32 - 1  # command ids are uint32
METHODS = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)
PING = b"{}"  # a server ping, and a client's pong
VERSION = "authchat"  # what `version` says in connect and refresh results


class BadRequest(Exception):
    """A frame that breaks the protocol: the socket is closed with 3501 (bad request)."""


class ReplyError(Exception):
    """A command the server refuses: answered with Centrifugo's error, the socket stays."""

    def __init__(self, code: int, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.temporary = temporary


@dataclass(frozen=True)
class Command:
    """One command: its id (0: none), its method ("" for a pong) and that method's request."""

    id: int
    method: str
    request: dict[str, Any]


def parse(data: str) -> list[Command]:
    """The commands of a text frame, in order; raises `BadRequest`."""
    lines = [line for line in data.split("\n") if line.strip()]
    if not lines:
        raise BadRequest("an empty frame")
    if len(lines) > MAX_COMMANDS:
        raise BadRequest(f"at most {MAX_COMMANDS} commands in one frame")
    return [_command(line) for line in lines]


def _command(line: str) -> Command:
    try:
        frame = json.loads(line)
    except (ValueError, RecursionError):
        raise BadRequest("a command that is not JSON") from None
    if not isinstance(frame, dict):
        raise BadRequest("a command must be a JSON object")
    command_id = frame.get("id", 0)
    if not isinstance(command_id, int) or isinstance(command_id, bool):
        raise BadRequest("id must be an integer")
    if not 0 <= command_id <= MAX_ID:
        raise BadRequest("id must be a uint32")
    methods = [name for name in METHODS if frame.get(name) is not None]
    if len(methods) > 1:
        raise BadRequest("one method per command")
    if not methods:
        if command_id:
            raise BadRequest("a command with an id names a method")
        return Command(0, "", {})  # a pong
    method = methods[0]
    request = frame[method]
    if not isinstance(request, dict):
        raise BadRequest(f"{method} must be an object")
    if not command_id and method != "send":  # only `send` expects no reply
        raise BadRequest(f"{method} needs an id")
    return Command(command_id, method, request)


# -- reading a request's fields -------------------------------------------------------------


def channel(request: dict[str, Any]) -> str:
    """The room a request names (a channel is a room)."""
    name = request.get("channel")
    if not isinstance(name, str) or not ROOM.fullmatch(name):
        raise ReplyError(UNKNOWN_CHANNEL, "a channel is a room: ^[A-Za-z0-9_.:,-]{1,128}$")
    return name


def offset(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    raise ReplyError(BAD_REQUEST, "an offset is a count")


def epoch(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and len(value) <= MAX_KEY_LENGTH and not SURROGATE.search(value):
        return value
    raise ReplyError(BAD_REQUEST, f"an epoch is a string of at most {MAX_KEY_LENGTH}")


def token(request: dict[str, Any]) -> str | None:
    """The request's token (None when absent or empty)."""
    value = request.get("token")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or SURROGATE.search(value):
        raise ReplyError(BAD_REQUEST, "token must be a string")
    return value


def message(request: dict[str, Any], *, max_text: int) -> tuple[str, str | None]:
    """A publish's `data`: `{"text": T, "idempotency_key"?: K}`; its text and key."""
    data = request.get("data")
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text or SURROGATE.search(text):
        raise ReplyError(BAD_REQUEST, 'data must be {"text": a non-empty string}')
    if len(text) > max_text:
        raise ReplyError(BAD_REQUEST, f"text is limited to {max_text} characters")
    assert isinstance(data, dict)
    key = data.get("idempotency_key")
    if key is not None and not (
        isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH and not SURROGATE.search(key)
    ):
        raise ReplyError(BAD_REQUEST, f"idempotency_key is a string of 1 to {MAX_KEY_LENGTH}")
    return text, key


# -- error codes (Centrifugo's errors.go) ---------------------------------------------------

INTERNAL = 100
UNAUTHORIZED = 101
UNKNOWN_CHANNEL = 102
PERMISSION_DENIED = 103
METHOD_NOT_FOUND = 104
ALREADY_SUBSCRIBED = 105
LIMIT_EXCEEDED = 106
BAD_REQUEST = 107
NOT_AVAILABLE = 108
TOKEN_EXPIRED = 109
TOO_MANY_REQUESTS = 111
UNRECOVERABLE_POSITION = 112


# -- out ------------------------------------------------------------------------------------

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode(frame: dict[str, Any]) -> bytes:
    return _encode_json(frame).encode()


def reply(command: Command, result: dict[str, Any]) -> bytes:
    return encode({"id": command.id, command.method: result})


def error(command_id: int, refused: ReplyError) -> bytes:
    body: dict[str, Any] = {"code": refused.code, "message": refused.message}
    if refused.temporary:
        body["temporary"] = True
    return encode({"id": command_id, "error": body})


def with_publications(command: Command, result: dict[str, Any], pubs: list[bytes]) -> bytes:
    """A reply whose result's `publications` are encoded already (no re-encoding)."""
    head = encode({"id": command.id, command.method: result})
    listed = b'"publications":[' + b",".join(pubs) + b"]"
    return head[:-2] + (b"," if result else b"") + listed + b"}}"


def lease(client: str, exp: int) -> dict[str, Any]:
    """What connect and refresh results say of the connection's life: the SDK refreshes
    its token after `ttl` seconds, 90 % of the token's remaining life (before it expires)."""
    remaining = exp - time.time()
    return {
        "client": client,
        "version": VERSION,
        "expires": True,
        "ttl": max(1, int(remaining * 0.9)),
    }


def push(room: str, kind: str, body: dict[str, Any]) -> bytes:
    return encode({"push": {"channel": room, kind: body}})


def push_raw(room: str, kind: str, body: bytes) -> bytes:
    return (
        b'{"push":{"channel":'
        + _encode_json(room).encode()
        + b',"'
        + kind.encode()
        + b'":'
        + body
        + b"}}"
    )


def client_info(user: dict[str, Any]) -> dict[str, Any]:
    """A user as Centrifugo's ClientInfo: `user` is the id, `conn_info` the rest (we keep
    presence per user, not per connection: no `client`)."""
    conn_info = {k: v for k, v in user.items() if k != "id"}
    return {"user": user["id"], "conn_info": conn_info}


def publication(frame: bytes, offset: int | None) -> bytes | None:
    """Our `message` frame as a Publication: `data` {id, text, from, ts}, `info` the sender,
    `offset`, `time` (ms). None for a frame that is not a message."""
    parsed = json.loads(frame)
    if not isinstance(parsed, dict) or parsed.get("type") != "message":
        return None
    sender, ts = parsed["from"], parsed["ts"]
    pub: dict[str, Any] = {
        "data": {"id": parsed["id"], "text": parsed["text"], "from": sender, "ts": ts},
        "info": client_info(sender),
        "time": int(ts * 1000),
    }
    if offset is not None:
        pub["offset"] = offset
    return encode(pub)


def translated(message: RoomMessage) -> tuple[str, bytes] | None:
    """What a room message is for a Centrifugo socket: ("pub", push), ("join" or "leave",
    push) for presence events, or None for anything else."""
    parsed_kind = _kind(message.frame)
    if parsed_kind == "message":
        pub = publication(message.frame, message.offset)
        return None if pub is None else ("pub", push_raw(message.room, "pub", pub))
    if parsed_kind in ("member_joined", "member_left"):
        event = json.loads(message.frame)
        kind = "join" if parsed_kind == "member_joined" else "leave"
        return kind, push(message.room, kind, {"info": client_info(event["user"])})
    return None


def _kind(frame: bytes) -> str | None:
    # Every frame of ours starts with its type: no need to parse what is not ours to send.
    for kind in ("message", "member_joined", "member_left"):
        if frame.startswith(b'{"type":"' + kind.encode() + b'"'):
            return kind
    return None

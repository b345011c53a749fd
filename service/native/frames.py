"""Frames in and out of `/ws` (docs/protocol.md documents each one)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from common.room_names import ROOM

# JSON may spell lone UTF-16 surrogates ("\ud800"), which no UTF-8 frame can carry back.
SURROGATE = re.compile("[\ud800-\udfff]")
MAX_REF_LENGTH = 128
MAX_SAFE_INTEGER = 2**53 - 1
OPS = ("join", "leave", "send", "history", "presence", "ping", "refresh")
MAX_KEY_LENGTH = 64  # idempotency keys, epochs
MAX_PAGE = 100  # messages per `history` answer

Ref = str | int | None


class ProtocolError(Exception):
    """A frame the server refuses; answered with an error frame, the socket stays open."""

    def __init__(self, code: str, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@dataclass(frozen=True)
class Command:
    """One parsed client frame."""

    op: str
    ref: Ref = None
    room: str = ""
    text: str = ""
    token: str = ""
    since: tuple[int, str] | None = None  # join: (offset, epoch)
    idempotency_key: str | None = None  # send
    before: int | None = None  # history
    limit: int = MAX_PAGE  # history


def _ref(frame: dict[str, Any]) -> Ref:
    ref = frame.get("ref")
    if ref is None:
        return None
    if isinstance(ref, str) and len(ref) <= MAX_REF_LENGTH and not SURROGATE.search(ref):
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) <= MAX_SAFE_INTEGER:
        return ref
    raise ProtocolError(
        "bad_ref", f"ref must be a string of at most {MAX_REF_LENGTH} characters or a safe integer"
    )


def _room(frame: dict[str, Any], ref: Ref) -> str:
    room = frame.get("room")
    if not isinstance(room, str) or not ROOM.fullmatch(room):
        raise ProtocolError("bad_room", "room must match ^[A-Za-z0-9_.:,-]{1,128}$", ref)
    return room


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SAFE_INTEGER


def _short_text(value: object) -> bool:
    return (
        isinstance(value, str) and 0 < len(value) <= MAX_KEY_LENGTH and not SURROGATE.search(value)
    )


def _since(frame: dict[str, Any], ref: Ref) -> tuple[int, str] | None:
    since = frame.get("since")
    if since is None:
        return None
    if (
        not isinstance(since, dict)
        or not _count(since.get("offset"))
        or not _short_text(since.get("epoch"))
    ):
        raise ProtocolError(
            "bad_since", "since must be {offset: a count, epoch: a string of 1 to 64}", ref
        )
    return since["offset"], since["epoch"]


def _history(frame: dict[str, Any], ref: Ref) -> tuple[int | None, int]:
    before, limit = frame.get("before"), frame.get("limit", MAX_PAGE)
    if before is not None and not (_count(before) and before > 0):
        raise ProtocolError("bad_history", "before must be an offset (a positive count)", ref)
    if not (_count(limit) and 1 <= limit <= MAX_PAGE):
        raise ProtocolError("bad_history", f"limit must be from 1 to {MAX_PAGE}", ref)
    return before, limit


def parse(data: str, *, max_text: int) -> Command:
    """The command in a text frame, or `ProtocolError` saying what is wrong with it."""
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "the frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "the frame must be a JSON object")
    ref = _ref(frame)
    op = frame.get("op")
    if op not in OPS:
        raise ProtocolError("unknown_op", f"op must be one of {', '.join(OPS)}", ref)
    if op == "join":
        return Command(op, ref, room=_room(frame, ref), since=_since(frame, ref))
    if op in ("leave", "presence"):
        return Command(op, ref, room=_room(frame, ref))
    if op == "history":
        room = _room(frame, ref)
        before, limit = _history(frame, ref)
        return Command(op, ref, room=room, before=before, limit=limit)
    if op == "send":
        room = _room(frame, ref)
        text = frame.get("text")
        if not isinstance(text, str) or not text:
            raise ProtocolError("bad_text", "text must be a non-empty string", ref)
        if len(text) > max_text:
            raise ProtocolError("too_long", f"text is limited to {max_text} characters", ref)
        if SURROGATE.search(text):
            raise ProtocolError("bad_text", "text must be valid Unicode (no lone surrogates)", ref)
        key = frame.get("idempotency_key")
        if key is not None and not _short_text(key):
            raise ProtocolError(
                "bad_idempotency_key", "idempotency_key must be a string of 1 to 64", ref
            )
        return Command(op, ref, room=room, text=text, idempotency_key=key)
    if op == "refresh":
        token = frame.get("token")
        if not isinstance(token, str) or not token or SURROGATE.search(token):
            raise ProtocolError("bad_token", "token must be a non-empty string", ref)
        return Command(op, ref, token=token)
    return Command(op, ref)


# One encoder for every frame: json.dumps with options builds a new encoder on each call.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode(frame: dict[str, Any]) -> bytes:
    """A frame as the UTF-8 bytes that go on the wire, so each is encoded exactly once."""
    return _encode_json(frame).encode()


def reply(frame: dict[str, Any], ref: Ref) -> bytes:
    """A direct answer to a client frame, echoing its `ref` when it had one."""
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)


def error(code: str, message: str, ref: Ref = None) -> bytes:
    return reply({"type": "error", "code": code, "message": message}, ref)


def message_parts(
    room: str, message_id: str, sender: dict[str, str], text: str, ts: float
) -> tuple[bytes, bytes]:
    """A `message` frame cut where its offset goes (the offset is assigned as it is stored):
    `before + b"<offset>" + after` is the frame."""
    head = encode({"type": "message", "room": room, "id": message_id})
    tail = encode({"from": sender, "text": text, "ts": round(ts, 3)})
    return head[:-1] + b',"offset":', b"," + tail[1:]


def joined(
    room: str, epoch: str | None, offset: int | None, recovered: bool | None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "joined", "room": room}
    if epoch is not None:
        frame["epoch"], frame["offset"] = epoch, offset
    if recovered is not None:
        frame["recovered"] = recovered
    return frame


def gap(room: str, first: int | None, last: int | None, *, reset: bool) -> bytes:
    frame: dict[str, Any] = {"type": "gap", "room": room}
    if reset:
        frame["reset"] = True
    elif first is not None:
        frame["from"], frame["to"] = first, last
    return encode(frame)


def history(room: str, epoch: str | None, messages: list[bytes], ref: Ref) -> bytes:
    """A `history` answer around message frames as they were stored (no re-encoding)."""
    head = reply({"type": "history", "room": room, "epoch": epoch}, ref)
    return head[:-1] + b',"messages":[' + b",".join(messages) + b"]}"


def presence(room: str, count: int, members: list[dict[str, Any]], ref: Ref) -> bytes:
    return reply({"type": "presence", "room": room, "count": count, "members": members}, ref)

"""Frames in and out of `/ws` (docs/protocol.md documents each one)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ROOM = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# JSON may spell lone UTF-16 surrogates ("\ud800"), which no UTF-8 frame can carry back.
SURROGATE = re.compile("[\ud800-\udfff]")
MAX_REF_LENGTH = 128
MAX_SAFE_INTEGER = 2**53 - 1
OPS = ("join", "leave", "send", "ping", "refresh")

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
        raise ProtocolError("bad_room", "room must match ^[A-Za-z0-9_.:-]{1,64}$", ref)
    return room


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
    if op in ("join", "leave"):
        return Command(op, ref, room=_room(frame, ref))
    if op == "send":
        room = _room(frame, ref)
        text = frame.get("text")
        if not isinstance(text, str) or not text:
            raise ProtocolError("bad_text", "text must be a non-empty string", ref)
        if len(text) > max_text:
            raise ProtocolError("too_long", f"text is limited to {max_text} characters", ref)
        if SURROGATE.search(text):
            raise ProtocolError("bad_text", "text must be valid Unicode (no lone surrogates)", ref)
        return Command(op, ref, room=room, text=text)
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

"""What a frame from the server does to `chat-client`'s conversation, and the line it
prints for it (or none)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from chat_client.console import printable
from chat_client.conversation import Conversation
from chat_client.display import clock, describe, rejoined

# A frame refused with `rate_limited` or `unavailable` is sent again for up to this long: a
# Redis Cluster shard failing over (Redis's default node timeout alone is 15 s) fits in it.
RETRY_FOR = 30.0
TRANSIENT = ("rate_limited", "unavailable")


@dataclass
class InFlight:
    """The one frame sent and not answered yet (`rejoin`: a join resuming a room after a
    drop; `attempt`: how many times it was refused for a moment before this send)."""

    ref: int
    frame: dict[str, Any]
    rejoin: bool
    answer: asyncio.Future[dict[str, Any]]
    attempt: int = 0


def hello(conversation: Conversation, frame: dict[str, Any]) -> None:
    """Learns from the `hello` frame who this user is (for `/dm`)."""
    user = frame.get("user")
    name = user.get("username") if isinstance(user, dict) else None
    if isinstance(name, str):
        conversation.me = name


def line(
    conversation: Conversation, frame: dict[str, Any], inflight: InFlight | None
) -> str | None:
    """The output for `frame` (None: nothing to print), once the conversation took it in."""
    kind, room = frame.get("type"), frame.get("room")
    mine = inflight is not None and inflight.ref == frame.get("ref")
    asked = inflight.frame if mine and inflight is not None else None
    if kind == "message":
        known = conversation.rooms.get(str(room))
        return describe(frame) if known is None or known.fresh(frame) else None
    if kind == "joined" and isinstance(room, str):
        rejoin = inflight is not None and mine and inflight.rejoin
        conversation.joined(room, frame, resumed=rejoin)
        if rejoin and asked is not None:
            since = asked.get("since")
            return rejoined(room, frame, since["offset"] if since else None)
    if kind == "history" and asked is not None:
        return _history(conversation, frame, asked)
    if kind == "gap":
        conversation.gap(frame)
    if kind == "removed" and isinstance(room, str):
        conversation.left(room)  # not joined again after a reconnect
    if kind == "refreshed":
        return f"* token refreshed; valid until {clock(frame.get('expires_at'))}"
    if kind == "error" and inflight is not None and asked is not None:
        return _refused(frame, asked, inflight.attempt)
    return describe(frame)


def _refused(frame: dict[str, Any], asked: dict[str, Any], attempt: int) -> str | None:
    """The line for an error answering the frame in flight: which request, in which room."""
    where = f" #{asked['room']}" if "room" in asked else ""
    said = f"! {asked.get('op')}{where} refused: {frame.get('code')}: {frame.get('message')}"
    if frame.get("code") in TRANSIENT:  # said once; the client retries by itself
        retrying = f" (sending it again for up to {RETRY_FOR:.0f} s)"
        return printable(said + retrying) if attempt == 0 else None
    return printable(said)


def _history(conversation: Conversation, frame: dict[str, Any], asked: dict[str, Any]) -> str:
    """A page of earlier messages: a heading, then each as it was printed live."""
    name = str(frame.get("room"))
    messages = frame.get("messages")
    shown = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    if not shown:
        return printable(f"* #{name}: no earlier messages")
    room = conversation.rooms.get(name)
    offsets = [m["offset"] for m in shown if isinstance(m.get("offset"), int)]
    if room is not None and offsets and frame.get("epoch") == room.epoch:
        room.shown(min(offsets))
    more = " (/history for more)" if offsets and min(offsets) > 1 else ""
    if len(shown) < asked.get("limit", 0):
        more = ""  # the server had no more than these
    plural = "message" if len(shown) == 1 else "messages"
    heading = printable(f"* #{name}: {len(shown)} earlier {plural}{more}")
    return "\n".join([heading, *(describe(m) or "" for m in shown)])

"""The lines `chat-client` prints for what the server sends (all of it escaped: text from the
server is someone else's)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from chat_client.console import printable


def clock(ts: object) -> str:
    moment = time.time()
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        moment = float(ts)
    try:
        return time.strftime("%H:%M:%S", time.localtime(moment))
    except (OverflowError, OSError, ValueError):
        return time.strftime("%H:%M:%S")


def describe(frame: Mapping[str, Any]) -> str | None:
    """The output line for a server frame, or None for frames the user need not see."""
    kind = frame.get("type")
    room = frame.get("room")
    if kind == "message":
        sender = frame.get("from")
        username = sender.get("username") if isinstance(sender, dict) else None
        return printable(f"[{clock(frame.get('ts'))}] #{room} <{username}>: {frame.get('text')}")
    if kind in ("joined", "left"):
        return printable(f"* {kind} #{room}")
    if kind == "removed":
        return printable(f"* removed from #{room}: you are no longer a member")
    if kind in ("member_joined", "member_left"):
        user = frame.get("user")
        name = user.get("username") if isinstance(user, dict) else None
        return printable(f"* {name} {'joined' if kind == 'member_joined' else 'left'} #{room}")
    if kind == "presence":
        return printable(_presence(frame))
    if kind == "gap":
        return printable(_gap(frame))
    if kind == "error":
        return printable(f"! error {frame.get('code')}: {frame.get('message')}")
    return None


def _presence(frame: Mapping[str, Any]) -> str:
    members = frame.get("members")
    members = members if isinstance(members, list) else []
    names = [
        f"{m.get('username')}" + (f" ({m['connections']})" if m.get("connections", 1) > 1 else "")
        for m in members
        if isinstance(m, dict)
    ]
    count = frame.get("count")
    more = (
        f", and {count - len(names)} more" if isinstance(count, int) and count > len(names) else ""
    )
    return f"* #{frame.get('room')}: {count} here: {', '.join(names)}{more}"


def _gap(frame: Mapping[str, Any]) -> str:
    room = frame.get("room")
    if frame.get("reset"):
        return f"! #{room}: the room's history was reset; what was sent while you were away is lost"
    first, last = frame.get("from"), frame.get("to")
    if first is None:
        return f"! #{room}: messages may have been lost (the room keeps no history)"
    if first == last:
        return f"! #{room}: message {first} is lost (no longer in history)"
    return f"! #{room}: messages {first} to {last} are lost (no longer in history)"


def rejoined(room: str, frame: Mapping[str, Any], since: int | None) -> str:
    """The line for a join that resumes a room left by a drop (`since`: the last offset seen
    there, None in a room without history)."""
    if since is None or "offset" not in frame:
        return printable(f"* rejoined #{room} (no history: what was sent meanwhile is lost)")
    if frame.get("recovered") is not True:
        return printable(f"* rejoined #{room}")  # the gap frame that follows says what is lost
    missed = frame["offset"] - since if isinstance(frame["offset"], int) else 0
    if missed <= 0:
        return printable(f"* rejoined #{room}: nothing missed")
    plural = "message" if missed == 1 else "messages"
    return printable(f"* rejoined #{room}: {missed} missed {plural} follow")

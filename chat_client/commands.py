"""What a line typed into `chat-client` asks for: a message, or one of the slash commands
listed by `/help`. Parsing only: nothing here sends anything."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from common.room_names import ROOM

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")  # the auth service's rule
PRIVATE = "private"  # the namespace `/create NAME` puts a room in when NAME has none
HISTORY_PAGE, HISTORY_MAX = 20, 100  # messages per /history; the server's most per request

# (usage, what it does), in the order /help lists them.
COMMANDS = (
    ("/join ROOM", "join ROOM; what you type goes there"),
    ("/switch ROOM", "type into ROOM, one you have joined"),
    ("/rooms", "the rooms you are in"),
    ("/leave [ROOM]", "leave ROOM"),
    ("/create NAME", f"create the private room {PRIVATE}:NAME (you own it) and join it"),
    ("/invite USER [ROOM]", "let USER into your private room; they /join it"),
    ("/remove USER [ROOM]", "take USER out of your private room (yourself: leave it for good)"),
    ("/dm USER", "join your direct conversation with USER (they see it once they /dm you)"),
    ("/who [ROOM]", "who is here"),
    ("/history [N]", f"the N messages before the earliest shown here (default {HISTORY_PAGE})"),
    ("/help", "this list"),
    ("//text", "sends /text"),
)
HELP = "\n".join(
    ["commands (ROOM: the current room when left out)"]
    + [f"  {usage:<20} {what}" for usage, what in COMMANDS]
)
SUMMARY = "commands: " + " ".join(u.split()[0] for u, _ in COMMANDS[:-1])


@dataclass(frozen=True)
class Outgoing:
    """One line the user typed, as the frame it becomes on the socket. A `send` keeps its
    idempotency key across reconnects: resent after a drop, it is published once."""

    op: str  # "send", "join", "leave", "presence" or "history"
    room: str
    text: str = ""
    limit: int = HISTORY_PAGE  # of a "history"
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def frame(self, before: int | None = None) -> dict[str, Any]:
        """The frame to send (`before`: where a history page ends, None for the newest)."""
        if self.op == "send":
            return {"op": "send", "room": self.room, "text": self.text, "idempotency_key": self.key}
        if self.op == "history":
            frame: dict[str, Any] = {"op": "history", "room": self.room, "limit": self.limit}
            if before is not None:
                frame["before"] = before
            return frame
        return {"op": self.op, "room": self.room}


@dataclass(frozen=True)
class RoomCall:
    """A call to the chat service's rooms API: "create" a room, "invite" or "remove" a user."""

    action: str
    room: str
    username: str = ""


@dataclass(frozen=True)
class Local:
    """A command that changes only what this client shows: "switch" rooms, list "rooms"."""

    op: str
    room: str = ""


Command = Outgoing | RoomCall | Local


def dm_room(me: str, other: str) -> str:
    """The one spelling the server accepts for two users' DM room: lower case, sorted."""
    first, second = sorted((me.lower(), other.lower()))
    return f"dm:{first},{second}"


def _usage(usage: str) -> str:
    return f"! usage: {usage}"


ROOM_RULE = "a room name: letters, digits, _ . : , -"


def _room(argument: str, current: str | None, usage: str) -> str:
    """The room a command names, or the current one; raises ValueError with what to print."""
    if not argument and current is not None:
        return current
    if not argument:
        raise ValueError(f"! {usage}: name the room, or /join ROOM first")
    if not ROOM.fullmatch(argument):
        raise ValueError(_usage(f"{usage} ({ROOM_RULE})"))
    return argument


def _user_and_room(argument: str, current: str | None, usage: str) -> tuple[str, str]:
    username, _, rest = argument.partition(" ")
    if not USERNAME.fullmatch(username):
        raise ValueError(_usage(f"{usage} (a username: 3 to 32 letters, digits, _ . -)"))
    return username, _room(rest.strip(), current, usage)


def parse_line(line: str, current: str | None, me: str | None = None) -> Command | str:
    """What a typed line asks for, or the line to print when it asks for nothing valid
    (`current`: the room lines go to; `me`: this user's name, once the server said it)."""
    if not line.startswith("/") or line.startswith("//"):
        if current is None:
            return "! not in a room: /join ROOM first"
        return Outgoing("send", current, line.removeprefix("/") if line.startswith("//") else line)
    command, _, argument = line[1:].partition(" ")
    argument = argument.strip()
    try:
        return _command(command, argument, current, me)
    except ValueError as wrong:
        return str(wrong)


def _command(command: str, argument: str, current: str | None, me: str | None) -> Command | str:
    match command:
        case "help":
            return HELP
        case "join" | "switch":
            if not ROOM.fullmatch(argument):
                raise ValueError(_usage(f"/{command} ROOM ({ROOM_RULE})"))
            room = argument
            return Outgoing("join", room) if command == "join" else Local("switch", room)
        case "rooms":
            return Local("rooms")
        case "leave":
            return Outgoing("leave", _room(argument, current, "/leave [ROOM]"))
        case "who":
            return Outgoing("presence", _room(argument, current, "/who [ROOM]"))
        case "create":
            name = argument if ":" in argument else f"{PRIVATE}:{argument}"
            if not argument or " " in argument or not ROOM.fullmatch(name):
                raise ValueError(_usage("/create NAME (letters, digits, _ . , -)"))
            return RoomCall("create", name)
        case "invite" | "remove":
            username, room = _user_and_room(argument, current, f"/{command} USER [ROOM]")
            return RoomCall(command, room, username)
        case "dm":
            if not USERNAME.fullmatch(argument):
                raise ValueError(_usage("/dm USER (a username: 3 to 32 letters, digits, _ . -)"))
            if me is None:
                raise ValueError("! /dm: not connected yet; try again in a moment")
            if argument.lower() == me.lower():
                raise ValueError("! /dm needs another user's name")
            return Outgoing("join", dm_room(me, argument))
        case "history":
            return _history(argument, current)
    return f"! unknown command /{command}; {SUMMARY}"


def _history(argument: str, current: str | None) -> Outgoing:
    if current is None:
        raise ValueError("! /history: /join ROOM first")
    if not argument:
        return Outgoing("history", current)
    if not re.fullmatch(r"[0-9]{1,3}", argument) or not 1 <= int(argument) <= HISTORY_MAX:
        raise ValueError(_usage(f"/history [N] (N from 1 to {HISTORY_MAX})"))
    return Outgoing("history", current, limit=int(argument))

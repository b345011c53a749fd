"""Who may join, send to and read a room: one decision for every path (socket frames, the
HTTP API, and any later protocol), so no path can forget a check (SPEC "Rooms").

- `join` and reading (history, presence) are one right: whoever may join may read;
- `open`: any user whose credential has the chat scope (the handshake checked it);
- `members`: only the room's members (`PrivateRooms`);
- `dm`: only the two users the name lists, `dm:<username>,<username>` in lower case and
  sorted (any other spelling is `BAD_ROOM`);
- `send`: `joined` lets whoever may join send (a socket must have joined first, which the
  socket path checks); `server` lets only the server API send;
- a server (a `chat:server` token) may do all of it, in any room of a configured namespace
  (a private room must exist: `NO_SUCH_ROOM` otherwise).

A user who may not see a room is `FORBIDDEN` whether or not it exists: a `members` room
costs one membership read either way, so refusals do not tell rooms apart by their timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from service.rooms.namespaces import Namespaces, Policy
from service.rooms.private import PrivateRooms

DM_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


class Verdict(Enum):
    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"
    BAD_ROOM = "bad_room"  # a `dm:` name not in its one spelling
    NO_SUCH_ROOM = "no_such_room"  # for a server only: a private room that does not exist
    UNKNOWN_NAMESPACE = "unknown_namespace"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a user, or a server (a `chat:server` token's client)."""

    id: str
    username: str
    server: bool = False

    @classmethod
    def service(cls, client_id: str) -> Actor:
        return cls(f"client:{client_id}", client_id, server=True)

    def public(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username}


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    policy: Policy | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOWED


def dm_pair(room: str) -> tuple[str, str] | None:
    """The two usernames of a `dm:` room in its canonical spelling, else None."""
    _, _, rest = room.partition(":")
    names = rest.split(",")
    if len(names) != 2 or names[0] >= names[1]:  # sorted, and two different users
        return None
    for name in names:
        if not 3 <= len(name) <= 32 or not set(name) <= DM_USERNAME_CHARS:
            return None
    return names[0], names[1]


def dm_room(first: str, second: str) -> str:
    """The one spelling of the DM room of two users."""
    low = sorted((first.lower(), second.lower()))
    return f"dm:{low[0]},{low[1]}"


class RoomAccess:
    """Decides join, send and read for every path (see the module's docstring)."""

    def __init__(self, namespaces: Namespaces, private: PrivateRooms) -> None:
        self._namespaces = namespaces
        self._private = private

    def policy(self, room: str) -> Policy | None:
        return self._namespaces.policy(room)

    async def to_join(self, actor: Actor, room: str) -> Decision:
        """May `actor` join `room`, and so read its history and presence?"""
        policy = self._namespaces.policy(room)
        if policy is None:
            return Decision(Verdict.UNKNOWN_NAMESPACE)
        if policy.join == "dm":
            pair = dm_pair(room)
            if pair is None:
                return Decision(Verdict.BAD_ROOM, policy)
            if not actor.server and actor.username.lower() not in pair:
                return Decision(Verdict.FORBIDDEN, policy)
        elif policy.join == "members":
            if actor.server:
                # A server may learn what exists; it must not fill a room nobody created,
                # whose first creator would then find it full of someone else's history.
                if not await self._private.exists(room):
                    return Decision(Verdict.NO_SUCH_ROOM, policy)
            elif not await self._private.is_member(room, actor.id):
                return Decision(Verdict.FORBIDDEN, policy)
        return Decision(Verdict.ALLOWED, policy)

    to_read = to_join

    async def to_send(self, actor: Actor, room: str, *, joined: bool) -> Decision:
        """May `actor` send to `room`? `joined`: the socket sending has joined the room (the
        join was decided then, and a removal takes the socket out); the HTTP API has no
        socket, so for it the join rule is applied now."""
        policy = self._namespaces.policy(room)
        if policy is None:
            return Decision(Verdict.UNKNOWN_NAMESPACE)
        if actor.server:
            return await self.to_join(actor, room)  # allowed, in a correctly spelt room
        if policy.send == "server":
            return Decision(Verdict.FORBIDDEN, policy)
        if joined:
            return Decision(Verdict.ALLOWED, policy)
        return await self.to_join(actor, room)

    async def still_allowed(self, actor: Actor, room: str, policy: Policy) -> bool:
        """Checked again once a join's subscription is in place (a removal published before
        it was cannot have reached this process): only membership can change."""
        if policy.join != "members" or actor.server:
            return True
        return await self._private.is_member(room, actor.id)

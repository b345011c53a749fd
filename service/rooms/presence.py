"""Who is in each room, per user across every instance (SPEC "Presence"), in Redis.

Per room (one slot, the room's hash tag): `presence` (user id -> that user's sockets in the
room on all instances: `HLEN` is the exact count), `presence:names` (user id -> username) and
one `presence:i:<instance>` per instance (user id -> its sockets there), so the sockets of an
instance that died can be taken away without a scan (`reap`). Entering and leaving are one
script each, which publishes `member_joined` when a user's first socket enters and
`member_left` when its last leaves, on the room's channel (in order with nothing: presence
events are outside the room's offsets).

Events are published only while the room has at most `EVENTS_UP_TO` present users: in a
bigger room every join would be one frame to each of thousands of members, so such rooms
are counted and listed (`presence` queries) but not narrated, as Pusher caps presence
channels at 100 members and Ably at 200 for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from common.redis import RedisClient, execute_together
from service.rooms.keys import publishing, room_key

EVENTS_UP_TO = 100  # present users up to which member_joined / member_left are published
MAX_LISTED = 1_000  # members one presence answer lists
# One socket leaving: room, instance, user id, username, the room's channel (None: no events).
Exit = tuple[str, str, str, str, str | None]

_ENTER = """
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if total == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  if ARGV[3] ~= '' and redis.call('HLEN', KEYS[1]) <= tonumber(ARGV[4]) then
    redis.call('PUBLISH', ARGV[3], ARGV[5])
  end
end
return total
"""
"""KEYS: presence, names, this instance's. ARGV: user id, username, channel ('' for no
events), EVENTS_UP_TO, the member_joined frame."""

_EXIT = """
local here = redis.call('HINCRBY', KEYS[3], ARGV[1], -1)
if here <= 0 then redis.call('HDEL', KEYS[3], ARGV[1]) end
if here < 0 then return -1 end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if total <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  if total == 0 and ARGV[2] ~= '' and redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
    redis.call('PUBLISH', ARGV[2], ARGV[4])
  end
end
return total
"""
"""KEYS: presence, names, this instance's. ARGV: user id, channel ('' for no events),
EVENTS_UP_TO, the member_left frame. -1 when the user had no socket here (nothing done)."""

_REAP = """
local gone = redis.call('HGETALL', KEYS[3])
redis.call('DEL', KEYS[3])
local left = 0
for i = 1, #gone, 2 do
  local user, count = gone[i], tonumber(gone[i + 1])
  local total = redis.call('HINCRBY', KEYS[1], user, -count)
  if total <= 0 then
    local name = redis.call('HGET', KEYS[2], user)
    redis.call('HDEL', KEYS[1], user)
    redis.call('HDEL', KEYS[2], user)
    left = left + 1
    if ARGV[1] ~= '' and name and redis.call('HLEN', KEYS[1]) < tonumber(ARGV[2]) then
      redis.call('PUBLISH', ARGV[1], ARGV[3] .. user .. ARGV[4] .. cjson.encode(name) .. ARGV[5])
    end
  end
end
return left
"""
"""KEYS: presence, names, the dead instance's. ARGV: channel ('' for no events),
EVENTS_UP_TO, and the member_left frame cut around the user's id and its JSON-encoded name.
Returns how many users left the room."""


@dataclass(frozen=True, slots=True)
class Present:
    id: str
    username: str
    connections: int

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "connections": self.connections}


def presence_key(room: str) -> str:
    return room_key(room, "presence")


def names_key(room: str) -> str:
    return room_key(room, "presence:names")


def instance_key(room: str, instance: str) -> str:
    return room_key(room, f"presence:i:{instance}")


def _frame(kind: str, room: str, user_id: str, username: str) -> bytes:
    return json.dumps(
        {"type": kind, "room": room, "user": {"id": user_id, "username": username}},
        separators=(",", ":"),
    ).encode()


class PresenceStore:
    """Enters, leaves, reaps and reads presence (see the module's docstring)."""

    def __init__(self, redis: RedisClient, *, sharded: bool = False) -> None:
        self._redis = redis
        self._enter = redis.register_script(publishing(_ENTER, sharded=sharded))
        self._exit = publishing(_EXIT, sharded=sharded)  # sent in pipelines: `exit_all`
        self._reap = redis.register_script(publishing(_REAP, sharded=sharded))

    async def enter(
        self, room: str, instance: str, user_id: str, username: str, channel: str | None
    ) -> int:
        """One more socket of the user in the room; returns the user's sockets there."""
        keys = [presence_key(room), names_key(room), instance_key(room, instance)]
        frame = _frame("member_joined", room, user_id, username)
        args: list[str | int | bytes] = [user_id, username, channel or "", EVENTS_UP_TO, frame]
        return int(await self._enter(keys=keys, args=args))

    async def exit_all(self, exits: Sequence[Exit]) -> list[int | Exception]:
        """One socket fewer for each of `exits`, in one pipeline: per exit the user's sockets
        left in the room (-1: none was), or its error as a value, in order; what breaks the
        whole exchange (Redis away) is raised."""

        def queue(pipe: Any) -> None:
            for room, instance, user_id, username, channel in exits:
                frame = _frame("member_left", room, user_id, username)
                keys = (presence_key(room), names_key(room), instance_key(room, instance))
                pipe.eval(self._exit, 3, *keys, user_id, channel or "", EVENTS_UP_TO, frame)

        replies = await execute_together(self._redis, queue)
        return [r if isinstance(r, Exception) else int(r) for r in replies]

    async def reap(self, room: str, instance: str, channel: str | None) -> int:
        """Takes away every socket a dead instance had in the room; returns how many users
        that made leave."""
        head = f'{{"type":"member_left","room":{json.dumps(room)},"user":{{"id":"'
        keys = [presence_key(room), names_key(room), instance_key(room, instance)]
        args: list[str | int] = [channel or "", EVENTS_UP_TO, head, '","username":', "}}"]
        return int(await self._reap(keys=keys, args=args))

    async def query(self, room: str) -> tuple[int, list[Present]]:
        """The exact count of present users, and up to `MAX_LISTED` of them."""
        key = presence_key(room)
        count = int(await self._redis.hlen(key))
        found: dict[str, int] = {}
        async for user_id, connections in self._redis.hscan_iter(key, count=1000):
            found[_text(user_id)] = int(connections)
            if len(found) >= MAX_LISTED:
                break
        ids = list(found)
        names = await self._redis.hmget(names_key(room), ids) if ids else []
        listed = [
            Present(user_id, _text(name) if name is not None else "", found[user_id])
            for user_id, name in zip(ids, names, strict=True)
        ]
        return count, sorted(listed, key=lambda p: (p.username.lower(), p.id))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else cast(str, value)

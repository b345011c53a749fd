"""Private rooms (`join: members`): who owns each, and who its members are, in Redis.

Per room: `chat:{room:R}:owner`, the owner's `<id> <username>`, whose presence is what makes
the room exist; `chat:{room:R}:members`, a hash of member id -> username. Removing a member
and deleting the room publish a control payload on the room's channel in the same script
(`messages.removed_payload`, `messages.DELETED`), so every instance with members in the room
takes them out, in order with the room's messages; deleting also drops the room's history,
so a room created again under the name starts a new epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from common.redis import RedisClient
from service.rooms.history import history_key, meta_key
from service.rooms.keys import publishing, room_key
from service.rooms.messages import DELETED, removed_payload

MAX_MEMBERS = 10_000  # members per private room
MAX_LISTED = 1_000  # members one listing returns

_CREATE = """
if redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'NX') == false then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
"""KEYS: owner, members. ARGV: owner id, owner username. 1 created, 0 exists."""

_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 'ok' end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then return 'full' end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 'ok'
"""
"""KEYS: owner, members. ARGV: id, username, most members."""

_REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
"""KEYS: members. ARGV: id, channel, removal payload. 1 removed, 0 was not a member."""

_DELETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', unpack(KEYS))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""
"""KEYS: owner, then everything else of the room. ARGV: channel, deletion payload."""


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    username: str


def owner_key(room: str) -> str:
    return room_key(room, "owner")


def members_key(room: str) -> str:
    return room_key(room, "members")


class PrivateRooms:
    """Creates, lists and changes private rooms (see the module's docstring)."""

    def __init__(
        self, redis: RedisClient, channel_of: Callable[[str], str], *, sharded: bool = False
    ) -> None:
        self._redis = redis
        self._channel = channel_of  # a room's pub/sub channel
        self._create = redis.register_script(publishing(_CREATE, sharded=sharded))
        self._add = redis.register_script(publishing(_ADD, sharded=sharded))
        self._remove = redis.register_script(publishing(_REMOVE, sharded=sharded))
        self._delete = redis.register_script(publishing(_DELETE, sharded=sharded))

    async def create(self, room: str, owner: Owner) -> bool:
        """False when the room exists already."""
        created = await self._create(
            keys=[owner_key(room), members_key(room)], args=[owner.id, owner.username]
        )
        return bool(created)

    async def owner(self, room: str) -> Owner | None:
        value = await self._redis.get(owner_key(room))
        if value is None:
            return None
        user_id, _, username = _text(value).partition(" ")
        return Owner(user_id, username)

    async def exists(self, room: str) -> bool:
        return bool(await self._redis.exists(owner_key(room)))

    async def is_member(self, room: str, user_id: str) -> bool:
        return bool(await self._redis.hexists(members_key(room), user_id))

    async def which_members(self, room: str, user_ids: list[str]) -> set[str]:
        """Those of `user_ids` that are members (one read, for many sockets at once)."""
        if not user_ids:
            return set()
        names = await self._redis.hmget(members_key(room), user_ids)
        return {user_id for user_id, name in zip(user_ids, names, strict=True) if name is not None}

    async def members(self, room: str) -> tuple[int, list[Owner]]:
        """How many members, and up to `MAX_LISTED` of them."""
        key = members_key(room)
        count = int(await self._redis.hlen(key))
        listed: list[Owner] = []
        async for user_id, username in self._redis.hscan_iter(key, count=500):
            listed.append(Owner(_text(user_id), _text(username)))
            if len(listed) >= MAX_LISTED:
                break
        return count, sorted(listed, key=lambda m: m.username.lower())

    async def add(self, room: str, member: Owner) -> str:
        """'ok' (also when a member already), 'missing' (no such room) or 'full'."""
        answer = await self._add(
            keys=[owner_key(room), members_key(room)],
            args=[member.id, member.username, MAX_MEMBERS],
        )
        return _text(answer)

    async def remove(self, room: str, user_id: str) -> bool:
        """Whether `user_id` was a member; if so, every instance takes its sockets out."""
        removed = await self._remove(
            keys=[members_key(room)], args=[user_id, self._channel(room), removed_payload(user_id)]
        )
        return bool(removed)

    async def delete(self, room: str, *, also: tuple[str, ...] = ()) -> bool:
        """Deletes the room, its members, its history and the keys in `also`; False when
        it does not exist."""
        keys = [owner_key(room), members_key(room), history_key(room), meta_key(room), *also]
        deleted = await self._delete(keys=keys, args=[self._channel(room), DELETED])
        return bool(deleted)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else cast(str, value)

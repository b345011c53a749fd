"""User accounts in Redis: registration with atomic username uniqueness, lookup, state.

Layout: `auth:user:<id>` is a hash (id, username, password_hash, created_at, disabled);
`auth:username:<lowercased name>` maps a name to its id, so two registrations of one name
(in any letter case) cannot both succeed; `auth:skeleton:<skeleton>` maps a name's
look-alike skeleton to its id, so `aIice` (capital i), `a1ice` or `alice.` cannot be
registered next to `alice`.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from auth_service.errors import invalid_request

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 1024

# The name, its skeleton and the record in one step: no window where a name is claimed
# without a user, or a user exists under a name (or a look-alike) somebody else holds.
# KEYS: the name key, the user record, then the name's skeleton keys.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) > 0 then return 0 end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) > 0 then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[1]) end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'username', ARGV[2], 'password_hash', ARGV[3],
           'created_at', ARGV[4], 'disabled', '0')
return 1
"""

# Characters that look alike in common fonts, after Unicode TR 39's confusables restricted to
# the characters a username may hold: each maps to the one it is mistaken for. Applied before
# lower-casing, because only the capital I looks like l. Separators are left out entirely.
_LOOK_ALIKES = str.maketrans({"I": "l", "1": "l", "0": "o", ".": None, "_": None, "-": None})
_SEQUENCES = (("rn", "m"), ("vv", "w"))
SKELETONS_BACKFILLED = "auth:skeletons:v1"


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str
    disabled: bool

    def public(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username}


def validate_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise invalid_request("username must match ^[A-Za-z0-9_.-]{3,32}$")
    return username


def validate_password(password: object) -> str:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise invalid_request(f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return password


def skeleton(username: str) -> str:
    """What `username` looks like as written (`aIice`, `a1ice` and `alice.` give `alice`)."""
    folded = username.translate(_LOOK_ALIKES).lower()
    for sequence, looks_like in _SEQUENCES:
        folded = folded.replace(sequence, looks_like)
    return folded


def skeletons(username: str) -> list[str]:
    """The skeletons a name claims: as written and in lower case, because names are one
    account in any letter case (`ALICE` is `alice`, which `aIice` looks like) while only a
    capital I looks like l. Two names that share a skeleton are too easily mistaken."""
    return sorted({skeleton(username), skeleton(username.lower())})


def _user_key(user_id: str) -> str:
    return f"auth:user:{user_id}"


def _name_key(username: str) -> str:
    return f"auth:username:{username.lower()}"


def _skeleton_keys(username: str) -> list[str]:
    return [f"auth:skeleton:{each}" for each in skeletons(username)]


class UserStore:
    """Creates and reads user records."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(_CREATE)

    async def create(self, username: str, password_hash: str) -> User | None:
        """The new user, or None when the name (in any letter case), or a name that looks
        like it, is taken."""
        user_id = secrets.token_hex(16)
        created = await self._create(
            keys=[_name_key(username), _user_key(user_id), *_skeleton_keys(username)],
            args=[user_id, username, password_hash, int(time.time())],
        )
        if not created:
            return None
        return User(user_id, username, password_hash, disabled=False)

    async def by_id(self, user_id: str) -> User | None:
        record = cast(dict[str, str], await self._redis.hgetall(_user_key(user_id)))
        if not record:
            return None
        return User(
            id=record["id"],
            username=record["username"],
            password_hash=record["password_hash"],
            disabled=record.get("disabled") == "1",
        )

    async def by_username(self, username: str) -> User | None:
        if not USERNAME.fullmatch(username):
            return None
        user_id = cast(str | None, await self._redis.get(_name_key(username)))
        return None if user_id is None else await self.by_id(user_id)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self._redis.hset(_user_key(user_id), "password_hash", password_hash)

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        await self._redis.hset(_user_key(user_id), "disabled", "1" if disabled else "0")

    @staticmethod
    def key(user_id: str) -> str:
        return _user_key(user_id)

    async def backfill_skeletons(self) -> int:
        """Claims the skeleton of every user registered before skeletons were kept (once:
        a marker key records that it ran). Where two earlier names share a skeleton, the
        first one met keeps it; both accounts go on working. Returns how many skeletons it
        claimed."""
        if await self._redis.exists(SKELETONS_BACKFILLED):
            return 0
        claimed = 0
        async for key in self._redis.scan_iter(match="auth:username:*", count=500):
            user_id = await self._redis.get(key)
            username = await self._redis.hget(_user_key(str(user_id)), "username")
            if username is None:
                continue
            for key in _skeleton_keys(str(username)):
                claimed += bool(await self._redis.set(key, str(user_id), nx=True))
        await self._redis.set(SKELETONS_BACKFILLED, "1")
        return claimed

"""User accounts in Redis: registration with atomic username uniqueness, lookup, state.

Layout: `auth:user:<id>` is a hash (id, username, password_hash, created_at, disabled);
`auth:username:<lowercased name>` maps a name to its id, so two registrations of one name
(in any letter case) cannot both succeed; `auth:skeleton:<skeleton>` maps a name's
look-alike skeleton to its id, so `aIice` (capital i), `a1ice` or `alice.` cannot be
registered next to `alice`. Each key stands alone (one cluster slot each); see `create`.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import cast

from auth_service.errors import invalid_request
from common.redis import RedisClient

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 1024

# A claim on a name or a skeleton is taken with SET NX, and released by its claimant only.
# Claims are separate keys (on a cluster, separate slots), so a registration takes them one
# by one: each with a short expiry until the user record exists, then made permanent. Two
# registrations that conflict share at least one key, so at most one of them gets all of
# its claims; one that dies half-way leaves claims that expire, never a name held forever.
CLAIM_SECONDS = 60
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
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

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._release = redis.register_script(_RELEASE)

    async def create(self, username: str, password_hash: str) -> User | None:
        """The new user, or None when the name (in any letter case), or a name that looks
        like it, is taken: the name's claims first (released again if one is taken), then
        the record, then the claims made permanent."""
        user_id = secrets.token_hex(16)
        claims = [_name_key(username), *_skeleton_keys(username)]
        taken: list[str] = []
        for key in claims:
            if not await self._redis.set(key, user_id, nx=True, ex=CLAIM_SECONDS):
                for mine in taken:
                    await self._release(keys=[mine], args=[user_id])
                return None
            taken.append(key)
        await self._redis.hset(
            _user_key(user_id),
            mapping={
                "id": user_id,
                "username": username,
                "password_hash": password_hash,
                "created_at": int(time.time()),
                "disabled": "0",
            },
        )
        for key in claims:
            await self._redis.persist(key)
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

"""Each user's live grants (token families and browser sessions), so that all of them can be
revoked at once (password change, "revoke all my sessions", disabling the user) and so that
a user holds at most `AUTH_MAX_GRANTS_PER_USER` of them.

`auth:user:<id>:grants` is a sorted set scored by expiry, with members `f:<family>` and
`s:<sid>:<session id>`; expired members are pruned whenever a grant is added. A family's
score moves with each rotation, so the lowest scores are the grants least recently used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from common.redis import RedisClient


def grants_key(user_id: str) -> str:
    return f"auth:user:{user_id}:grants"


def session_member(sid: str, session_id: str) -> str:
    return f"s:{sid}:{session_id}"


def family_member(family: str) -> str:
    return f"f:{family}"


# KEYS: the grants set. ARGV: now, the most grants to keep, a member never to pick (the
# grant being made), the most to pick at once. Drops expired grants, then names (without
# removing them: that is done once each is revoked) the lowest-scored beyond the limit.
_OVER_LIMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local excess = math.min(redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2]), tonumber(ARGV[4]))
if excess <= 0 then return {} end
local picked = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess)) do
  if member ~= ARGV[3] and #picked < excess then picked[#picked + 1] = member end
end
return picked
"""
# Grants revoked to make room, at most, per grant made: a user far over the limit (from
# before it existed) comes down to it over several logins, none of them slow.
MOST_EVICTED_AT_ONCE = 100


@dataclass(frozen=True)
class Grant:
    """One live grant: its public `sid` and, for a session, the session id that is its key."""

    member: str
    sid: str
    session_id: str | None

    @classmethod
    def parse(cls, member: str) -> Grant:
        kind, _, rest = member.partition(":")
        if kind == "s":
            sid, _, session_id = rest.partition(":")
            return cls(member, sid, session_id)
        return cls(member, rest, None)


class GrantIndex:
    """Adds, lists and drops a user's grants."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._over_limit = redis.register_script(_OVER_LIMIT)

    async def _add(self, user_id: str, member: str, exp: int) -> None:
        key = grants_key(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", int(time.time()))
            pipe.zadd(key, {member: exp})
            pipe.expireat(key, exp, gt=True)
            pipe.expireat(key, exp, nx=True)
            await pipe.execute()

    async def add_family(self, user_id: str, family: str, exp: int) -> None:
        await self._add(user_id, family_member(family), exp)

    async def add_session(self, user_id: str, sid: str, session_id: str, exp: int) -> None:
        await self._add(user_id, session_member(sid, session_id), exp)

    async def remove_session(self, user_id: str, sid: str, session_id: str) -> None:
        await self.remove(user_id, session_member(sid, session_id))

    async def over_limit(self, user_id: str, limit: int, *, keep: str) -> list[Grant]:
        """The grants beyond `limit`, the lowest-scored first and never `keep` (at most
        `MOST_EVICTED_AT_ONCE`); they stay in the index until the caller has revoked them."""
        picked = await self._over_limit(
            keys=[grants_key(user_id)],
            args=[int(time.time()), limit, keep, MOST_EVICTED_AT_ONCE],
        )
        return [Grant.parse(member) for member in picked]

    async def remove(self, user_id: str, member: str) -> None:
        await self._redis.zrem(grants_key(user_id), member)

    async def live(self, user_id: str) -> list[Grant]:
        members = cast(
            list[str],
            await self._redis.zrangebyscore(grants_key(user_id), int(time.time()), "+inf"),
        )
        return [Grant.parse(member) for member in members]

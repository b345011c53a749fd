"""Refresh tokens: opaque, rotating, grouped in families, stored only as SHA-256 hashes.

A token is `rt_<family>.<secret>` (the family: 128 random bits in hex; the secret: 256 random
bits), so its keys can be found from the token alone and share the family's hash tag:
`auth:{fam:<family>}` is the family (user, client, revoked) and `auth:{fam:<family>}:rt:<hash>`
each token's record. Rotation is one Lua script over those keys (one cluster slot), so of two
concurrent uses of one token exactly one finds it unspent; the other is a reuse, and reuse
revokes the whole family. The family id is the `sid` claim of every access token issued from
it, so revoking the family also kills those. The user's grant index (another slot) is
updated after the script: it lists grants, it does not decide them.

Tokens issued before the family moved into the token (`rt_<secret>`, records at
`auth:rt:<hash>`, families at `auth:family:<family>`) keep working: their record and family
are copied under the new names the first time they are used (`Legacy`), and a family's state
is read from the new name, else the old one, until then.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import cast

from auth_service.errors import OAuthError, invalid_grant
from auth_service.grants import GrantIndex, family_member
from common import revocation_events
from common.credentials import looks_like_refresh_token
from common.redis import RedisClient


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def family_key(family: str) -> str:
    return f"auth:{{fam:{family}}}"


def record_key(family: str, token: str) -> str:
    return f"{family_key(family)}:rt:{_hash(token)}"


def legacy_family_key(family: str) -> str:
    return f"auth:family:{family}"


def legacy_record_key(token: str) -> str:
    return f"auth:rt:{_hash(token)}"


def family_in(token: str) -> str | None:
    """The family a token names (None for a token from before families were in tokens)."""
    family, dot, _ = token[3:].partition(".")
    return family if dot else None


# KEYS: old record, new record, family. ARGV: now, new jti, new exp, the client asking, the
# revocation channel. Returns {status, ...}; only 'ok' mints a successor. A reuse revokes the
# family and announces it in the same step, so the announcement cannot be lost between them.
_ROTATE = """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return {'unknown'} end
local t = {}
for i = 1, #rec, 2 do t[rec[i]] = rec[i + 1] end
if t['client_id'] ~= ARGV[4] then return {'wrong_client'} end
if redis.call('HGET', KEYS[3], 'revoked') ~= '0' then return {'revoked'} end
if tonumber(t['exp']) <= tonumber(ARGV[1]) then return {'expired'} end
if t['spent'] == '1' then
  redis.call('HSET', KEYS[3], 'revoked', '1')
  redis.call('PUBLISH', ARGV[5], cjson.encode(
    {kind = 'sid', value = t['family'], reason = 'refresh_token_reuse'}))
  return {'reused', t['family'], t['user_id']}
end
redis.call('HSET', KEYS[1], 'spent', '1')
redis.call('HSET', KEYS[2], 'user_id', t['user_id'], 'family', t['family'],
           'client_id', t['client_id'], 'scope', t['scope'], 'iat', ARGV[1],
           'exp', ARGV[3], 'spent', '0', 'jti', ARGV[2])
redis.call('EXPIREAT', KEYS[2], ARGV[3])
redis.call('EXPIREAT', KEYS[3], ARGV[3])
return {'ok', t['user_id'], t['family'], t['scope']}
"""

# KEYS: the family. ARGV: the revocation channel and the event to publish. Read and HSET in
# one step, so a family that expires in between does not come back as a hash without a TTL;
# the event is published in the same step. Returns the family's user when this call revoked
# it, else false.
_REVOKE_FAMILY = """
local state = redis.call('HMGET', KEYS[1], 'revoked', 'user_id')
if state[1] ~= '0' then return false end
redis.call('HSET', KEYS[1], 'revoked', '1')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return state[2]
"""

# KEYS: a key under its new name. ARGV: its fields and values, then its expiry (unix s).
# Copies only when the new key does not exist yet: two first uses copy once, and a copy never
# overwrites what the new key has become since (a spent record, a revoked family).
_COPY_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 1, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIREAT', KEYS[1], ARGV[#ARGV])
return 1
"""


@dataclass(frozen=True)
class RefreshRecord:
    """What a live refresh token stands for."""

    user_id: str
    family: str
    client_id: str
    scope: str
    iat: int
    exp: int
    jti: str


class ReusedRefreshToken(OAuthError):
    """A spent refresh token came back: its family has been revoked."""

    def __init__(self, *, family: str) -> None:
        super().__init__("invalid_grant", "the refresh token is invalid, expired or revoked")
        self.family = family


class RefreshTokens:
    """Creates, rotates, looks up and revokes refresh tokens and their families."""

    def __init__(self, redis: RedisClient, grants: GrantIndex, *, ttl: int) -> None:
        self._redis = redis
        self._grants = grants
        self.ttl = ttl
        self._rotate = redis.register_script(_ROTATE)
        self._revoke_family = redis.register_script(_REVOKE_FAMILY)
        self._copy = redis.register_script(_COPY_IF_ABSENT)

    def _new_token(self, family: str) -> str:
        return f"rt_{family}.{secrets.token_urlsafe(32)}"

    async def start_family(self, *, user_id: str, client_id: str, scope: str) -> tuple[str, str]:
        """A new grant: a fresh family and its first refresh token. Returns (token, family)."""
        family = secrets.token_hex(16)
        token = self._new_token(family)
        now = int(time.time())
        exp = now + self.ttl
        async with self._redis.pipeline(transaction=True) as pipe:  # one slot: the family's
            pipe.hset(
                family_key(family),
                mapping={"user_id": user_id, "client_id": client_id, "revoked": "0"},
            )
            pipe.expireat(family_key(family), exp)
            pipe.hset(
                record_key(family, token),
                mapping={
                    "user_id": user_id,
                    "family": family,
                    "client_id": client_id,
                    "scope": scope,
                    "iat": now,
                    "exp": exp,
                    "spent": "0",
                    "jti": secrets.token_hex(16),
                },
            )
            pipe.expireat(record_key(family, token), exp)
            await pipe.execute()
        await self._grants.add_family(user_id, family, exp)
        return token, family

    async def _locate(self, token: str) -> tuple[str, str] | None:
        """(family, record key) of a token (copying an earlier token's record across first),
        or None when there is no such token."""
        family = family_in(token)
        if family is not None:
            return family, record_key(family, token)
        record = cast(dict[str, str], await self._redis.hgetall(legacy_record_key(token)))
        if not record:
            return None
        family = record["family"]
        await self._copy_family(family)
        await self._copy(
            keys=[record_key(family, token)],
            args=[*(part for item in record.items() for part in item), record["exp"]],
        )
        return family, record_key(family, token)

    async def _copy_family(self, family: str) -> None:
        """An earlier family, copied under its new name if it is not there yet; a revocation
        of the old name that raced the copy is carried over."""
        old = cast(dict[str, str], await self._redis.hgetall(legacy_family_key(family)))
        if not old:
            return
        ttl = await self._redis.ttl(legacy_family_key(family))
        exp = int(time.time()) + (ttl if ttl > 0 else self.ttl)
        await self._copy(
            keys=[family_key(family)],
            args=[*(part for item in old.items() for part in item), exp],
        )
        if await self._redis.hget(legacy_family_key(family), "revoked") != "0":
            await self._redis.hset(family_key(family), "revoked", "1")

    async def rotate(self, token: str, *, client_id: str) -> tuple[str, RefreshRecord]:
        """Spend `token` and return its successor; reuse of a spent token kills the family.

        Raises `ReusedRefreshToken` (carrying the family) on reuse, `OAuthError` otherwise.
        """
        if not looks_like_refresh_token(token):
            raise invalid_grant("the refresh token is invalid")
        located = await self._locate(token)
        if located is None:
            raise invalid_grant("the refresh token is invalid, expired or revoked")
        family, old = located
        successor = self._new_token(family)
        now = int(time.time())
        new_jti = secrets.token_hex(16)
        result = await self._rotate(
            keys=[old, record_key(family, successor), family_key(family)],
            args=[now, new_jti, now + self.ttl, client_id, revocation_events.CHANNEL],
        )
        status = result[0]
        if status == "reused":
            await self._grants.remove(result[2], family_member(family))
            raise ReusedRefreshToken(family=result[1])
        if status != "ok":
            raise invalid_grant("the refresh token is invalid, expired or revoked")
        _, user_id, family, scope = result
        await self._grants.add_family(user_id, family, now + self.ttl)
        return successor, RefreshRecord(
            user_id=user_id,
            family=family,
            client_id=client_id,
            scope=scope,
            iat=now,
            exp=now + self.ttl,
            jti=new_jti,
        )

    async def lookup(self, token: str) -> RefreshRecord | None:
        """The record of a live (unspent, unexpired, family not revoked) token, else None."""
        if not looks_like_refresh_token(token):
            return None
        located = await self._locate(token)
        record = (
            {} if located is None else cast(dict[str, str], await self._redis.hgetall(located[1]))
        )
        if not record or record.get("spent") != "0" or int(record["exp"]) <= time.time():
            return None
        if not await self.family_active(record["family"]):
            return None
        return RefreshRecord(
            user_id=record["user_id"],
            family=record["family"],
            client_id=record["client_id"],
            scope=record["scope"],
            iat=int(record["iat"]),
            exp=int(record["exp"]),
            jti=record["jti"],
        )

    async def owner_of(self, token: str) -> tuple[str, str] | None:
        """(family, client id) of a refresh token we issued, spent or not; None if unknown."""
        if not looks_like_refresh_token(token):
            return None
        located = await self._locate(token)
        if located is None:
            return None
        family, client_id = await self._redis.hmget(located[1], ["family", "client_id"])
        if family is None or client_id is None:
            return None
        return str(family), str(client_id)

    async def family_active(self, family: str) -> bool:
        return await self.family_revoked_state(family) == "0"

    async def family_revoked_state(self, family: str) -> str | None:
        """The family's `revoked` field ('0' live, '1' revoked, None unknown), from its new
        name, else its name from before the tag."""
        state = await self._redis.hget(family_key(family), "revoked")
        return await self.legacy_family_state(family) if state is None else str(state)

    async def legacy_family_state(self, family: str) -> str | None:
        """The `revoked` field of a family from before the tag, under its old name."""
        state = await self._redis.hget(legacy_family_key(family), "revoked")
        return None if state is None else str(state)

    async def revoke_family(self, family: str, reason: str) -> str | None:
        """Revokes a live family and announces it (`sid` event, `reason`) in one step; its
        user's id, or None when it was already revoked or is gone. A family from before the
        tag is revoked under whichever name it has now (a copy racing this carries the
        revocation over: see `_copy_family`)."""
        event = revocation_events.encode("sid", family, reason)
        key = family_key(family)
        if not await self._redis.exists(key):
            key = legacy_family_key(family)
        revoked = await self._revoke_family(keys=[key], args=[revocation_events.CHANNEL, event])
        return None if revoked is None else str(revoked)

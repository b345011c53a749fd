"""Access tokens (signed JWTs) and refresh tokens (opaque, rotating, grouped in families).

This is the only module that imports `jwt`. Access tokens are EdDSA JWTs with header
`typ: at+jwt` and `kid`; verification pins the algorithm and requires every claim we issue.

Refresh tokens are `rt_` + 256 random bits, stored only as a SHA-256 hash:
`auth:rt:<hash>` holds the record, `auth:family:<family>` the family every rotation descends
from. Rotation is one Lua script, so of two concurrent uses of one token exactly one finds it
unspent; the other is a reuse, and reuse revokes the whole family. The family id is the `sid`
claim of every access token issued from it, so revoking the family also kills those.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

import jwt

from auth_service.errors import OAuthError, invalid_grant
from auth_service.grants import GrantIndex, grants_key
from auth_service.keys import KeyRing
from common import revocation_events
from common.credentials import looks_like_jwt, looks_like_refresh_token
from common.redis import RedisClient

ACCESS_TYP = "at+jwt"
ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "scope", "iat", "exp", "jti", "client_id"]


class InvalidToken(Exception):
    """The presented access token is not one this service issued and still honours."""


class AccessTokens:
    """Issues and verifies access tokens against the shared key ring."""

    def __init__(
        self, keyring: KeyRing, *, issuer: str, audience: str, ttl: int, leeway: int
    ) -> None:
        self._keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway

    async def sign(self, claims: dict[str, Any], *, typ: str = ACCESS_TYP) -> str:
        key = await self._keyring.signing_key()
        return jwt.encode(
            claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": typ}
        )

    async def issue(
        self, *, sub: str, username: str | None, scope: str, client_id: str, sid: str | None
    ) -> tuple[str, dict[str, Any]]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "username": username,
            "scope": scope,
            "client_id": client_id,
            "iat": now,
            "exp": now + self.ttl,
            "jti": secrets.token_hex(16),
            "sid": sid,
        }
        return await self.sign(claims), claims

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; `InvalidToken` for anything we did not issue or no longer accept."""
        if not looks_like_jwt(token):
            raise InvalidToken("not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("unreadable header") from exc
        if header.get("alg") != ALGORITHM or header.get("typ") != ACCESS_TYP:
            raise InvalidToken("wrong alg or typ")
        kid = header.get("kid")
        key = await self._keyring.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown kid")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        if not all(isinstance(claims[name], str) for name in ("sub", "scope", "jti", "client_id")):
            raise InvalidToken("malformed claims")
        # pyjwt compares times through int(), which accepts "9999999999": insist on numbers.
        if not all(_is_number(claims[name]) for name in ("exp", "iat", "nbf") if name in claims):
            raise InvalidToken("non-numeric time claim")
        # We never issue a longer lifetime: a token that claims one was not made by us, or
        # was made with a leaked key; either way it must not live until its own `exp`.
        if claims["exp"] - claims["iat"] > self.ttl + self.leeway:
            raise InvalidToken("lifetime longer than the service issues")
        claims["kid"] = kid  # which key signed it: retiring that key ends the token
        return claims


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_key(token: str) -> str:
    return f"auth:rt:{_hash(token)}"


_FAMILY_PREFIX = "auth:family:"
# The rotate script learns the user from the token record, so it gets the key as a pattern.
_GRANTS_KEY_PATTERN = grants_key("%s")


def family_key(family: str) -> str:
    return _FAMILY_PREFIX + family


# KEYS: old token record, new token record. ARGV: now, new jti, new exp, family key prefix,
# the client asking, grants key pattern, the revocation channel. Returns {status, ...}; only
# 'ok' mints a successor. A reuse revokes the family, takes it out of the user's grants and
# announces it in the same step, so the announcement cannot be lost between the two.
_ROTATE = """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return {'unknown'} end
local t = {}
for i = 1, #rec, 2 do t[rec[i]] = rec[i + 1] end
local fkey = ARGV[4] .. t['family']
if t['client_id'] ~= ARGV[5] then return {'wrong_client'} end
if redis.call('HGET', fkey, 'revoked') ~= '0' then return {'revoked'} end
if tonumber(t['exp']) <= tonumber(ARGV[1]) then return {'expired'} end
if t['spent'] == '1' then
  redis.call('HSET', fkey, 'revoked', '1')
  redis.call('ZREM', string.format(ARGV[6], t['user_id']), 'f:' .. t['family'])
  redis.call('PUBLISH', ARGV[7], cjson.encode(
    {kind = 'sid', value = t['family'], reason = 'refresh_token_reuse'}))
  return {'reused', t['family']}
end
redis.call('HSET', KEYS[1], 'spent', '1')
redis.call('HSET', KEYS[2], 'user_id', t['user_id'], 'family', t['family'],
           'client_id', t['client_id'], 'scope', t['scope'], 'iat', ARGV[1],
           'exp', ARGV[3], 'spent', '0', 'jti', ARGV[2])
redis.call('EXPIREAT', KEYS[2], ARGV[3])
redis.call('EXPIREAT', fkey, ARGV[3])
local grants = string.format(ARGV[6], t['user_id'])
redis.call('ZADD', grants, ARGV[3], 'f:' .. t['family'])
redis.call('EXPIREAT', grants, ARGV[3], 'GT')
return {'ok', t['user_id'], t['family'], t['scope']}
"""

# KEYS: the family. ARGV: the revocation channel and the event to publish. Read and HSET in
# one step, so a family that expires in between does not come back as a hash without a TTL;
# the event is published in the same step, so it cannot be lost once the state changed (a
# retry would find nothing to announce). Returns the family's user when this call revoked
# it, else false.
_REVOKE_FAMILY = """
local state = redis.call('HMGET', KEYS[1], 'revoked', 'user_id')
if state[1] ~= '0' then return false end
redis.call('HSET', KEYS[1], 'revoked', '1')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return state[2]
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


class RefreshTokens:
    """Creates, rotates, looks up and revokes refresh tokens and their families."""

    def __init__(self, redis: RedisClient, grants: GrantIndex, *, ttl: int) -> None:
        self._redis = redis
        self._grants = grants
        self.ttl = ttl
        self._rotate = redis.register_script(_ROTATE)
        self._revoke_family = redis.register_script(_REVOKE_FAMILY)

    async def _store(
        self, token: str, *, user_id: str, family: str, client_id: str, scope: str
    ) -> None:
        now = int(time.time())
        exp = now + self.ttl
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                _token_key(token),
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
            pipe.expireat(_token_key(token), exp)
            await pipe.execute()

    async def start_family(self, *, user_id: str, client_id: str, scope: str) -> tuple[str, str]:
        """A new grant: a fresh family and its first refresh token. Returns (token, family)."""
        family = secrets.token_hex(16)
        token = "rt_" + secrets.token_urlsafe(32)
        exp = int(time.time()) + self.ttl
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                family_key(family),
                mapping={"user_id": user_id, "client_id": client_id, "revoked": "0"},
            )
            pipe.expireat(family_key(family), exp)
            await pipe.execute()
        await self._store(token, user_id=user_id, family=family, client_id=client_id, scope=scope)
        await self._grants.add_family(user_id, family, exp)
        return token, family

    async def rotate(self, token: str, *, client_id: str) -> tuple[str, RefreshRecord]:
        """Spend `token` and return its successor; reuse of a spent token kills the family.

        Raises `ReusedRefreshToken` (carrying the family) on reuse, `OAuthError` otherwise.
        """
        if not looks_like_refresh_token(token):
            raise invalid_grant("the refresh token is invalid")
        successor = "rt_" + secrets.token_urlsafe(32)
        now = int(time.time())
        new_jti = secrets.token_hex(16)
        result = await self._rotate(
            keys=[_token_key(token), _token_key(successor)],
            args=[
                now,
                new_jti,
                now + self.ttl,
                _FAMILY_PREFIX,
                client_id,
                _GRANTS_KEY_PATTERN,
                revocation_events.CHANNEL,
            ],
        )
        status = result[0]
        if status == "reused":
            raise ReusedRefreshToken(family=result[1])
        if status != "ok":
            raise invalid_grant("the refresh token is invalid, expired or revoked")
        _, user_id, family, scope = result
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
        record = cast(dict[str, str], await self._redis.hgetall(_token_key(token)))
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
        family, client_id = await self._redis.hmget(_token_key(token), ["family", "client_id"])
        if family is None or client_id is None:
            return None
        return str(family), str(client_id)

    async def family_active(self, family: str) -> bool:
        return bool(await self._redis.hget(family_key(family), "revoked") == "0")

    async def revoke_family(self, family: str, reason: str) -> str | None:
        """Revokes a live family and announces it (`sid` event, `reason`) in one step; its
        user's id, or None when it was already revoked or is gone."""
        event = revocation_events.encode("sid", family, reason)
        user_id = await self._revoke_family(
            keys=[family_key(family)], args=[revocation_events.CHANNEL, event]
        )
        return None if user_id is None else str(user_id)


class ReusedRefreshToken(OAuthError):
    """A spent refresh token came back: its family has been revoked."""

    def __init__(self, *, family: str) -> None:
        super().__init__("invalid_grant", "the refresh token is invalid, expired or revoked")
        self.family = family

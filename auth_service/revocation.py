"""Revocation: the deny-list for access tokens, and the events other services listen to.

Every revocation is published on the Redis channel `auth:revocations` as JSON
`{"kind": "jti" | "sid" | "user" | "kid", "value": ..., "reason": ...}` so chat instances can drop
cached introspection results and close live sockets holding what died.
"""

from __future__ import annotations

import logging
import time

from auth_service.grants import Grant, GrantIndex, family_member
from auth_service.refresh import RefreshTokens
from auth_service.sessions import RedisSessionStorage
from common import revocation_events
from common.redis import RedisClient

log = logging.getLogger(__name__)

CHANNEL = revocation_events.CHANNEL


def jti_key(jti: str) -> str:
    return f"auth:revoked:jti:{jti}"


# KEYS: the jti's deny-list entry. ARGV: its TTL, the revocation channel, the event.
_DENY_AND_ANNOUNCE = """
if not redis.call('SET', KEYS[1], '1', 'EX', ARGV[1], 'NX') then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


async def announce(redis: RedisClient, kind: str, value: str, reason: str) -> None:
    """Publishes a revocation event (`kind` one of `revocation_events.FIELDS`)."""
    await redis.publish(CHANNEL, revocation_events.encode(kind, value, reason))
    log.info("revoked", extra={"kind": kind, "id": value, "reason": reason})


class Revocations:
    """Records what was revoked and announces it."""

    def __init__(
        self,
        redis: RedisClient,
        refresh: RefreshTokens,
        sessions: RedisSessionStorage,
        grants: GrantIndex,
        *,
        leeway: int,
        max_grants: int,
    ) -> None:
        self._redis = redis
        self._refresh = refresh
        self._sessions = sessions
        self._grants = grants
        self._leeway = leeway
        self._max_grants = max_grants
        self._deny = redis.register_script(_DENY_AND_ANNOUNCE)

    async def announce(self, kind: str, value: str, reason: str) -> None:
        await announce(self._redis, kind, value, reason)

    async def revoke_access_token(self, jti: str, exp: int) -> None:
        """Deny-lists a token until it would have expired anyway (plus the verification
        leeway) and announces it, in one step: only the call that deny-listed it announces,
        so revoking again costs the chat instances nothing, and no failure between the two
        can leave it deny-listed but unannounced."""
        ttl = max(int(exp - time.time()) + self._leeway, 1)
        event = revocation_events.encode("jti", jti, "revoked")
        if await self._deny(keys=[jti_key(jti)], args=[ttl, CHANNEL, event]):
            log.info("revoked", extra={"kind": "jti", "id": jti, "reason": "revoked"})

    async def revoke_family(self, family: str, reason: str) -> None:
        """Revokes a token family and announces it in one step (only when it was live until
        now), then takes it out of its user's grants."""
        user_id = await self._refresh.revoke_family(family, reason)
        if user_id is not None:
            log.info("revoked", extra={"kind": "sid", "id": family, "reason": reason})
            await self._grants.remove(user_id, family_member(family))

    async def end_session(self, sid: str) -> None:
        await self.announce("sid", sid, "logout")

    async def enforce_grant_limit(self, user_id: str, keep: str) -> None:
        """Revokes the user's grants beyond `AUTH_MAX_GRANTS_PER_USER`, least recently used
        first, never `keep` (the grant member just made)."""
        for grant in await self._grants.over_limit(user_id, self._max_grants, keep=keep):
            await self._revoke(grant, "grant_limit")
            await self._grants.remove(user_id, grant.member)  # once revoked, not before

    async def _revoke(self, grant: Grant, reason: str) -> None:
        if grant.session_id is not None:
            await self._sessions.delete(grant.session_id)
            await self.announce("sid", grant.sid, reason)
        else:
            await self.revoke_family(grant.sid, reason)

    async def revoke_user_grants(
        self, user_id: str, reason: str, *, keep: str | None = None
    ) -> int:
        """Revokes every live family and session of a user except the one whose sid is `keep`;
        each is announced by its own sid. Returns how many were revoked."""
        revoked = 0
        for grant in await self._grants.live(user_id):
            if grant.sid == keep:
                continue
            await self._revoke(grant, reason)
            await self._grants.remove(user_id, grant.member)
            revoked += 1
        return revoked

"""Who holds a credential: the single place that decides if a token or session is active.

`/introspect`, `/me` and `/revoke` all ask here, so "active" means the same everywhere:
a valid signature or record, not revoked, its family alive, its user present and enabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from auth_service.clients import ClientRegistry
from auth_service.keys import KEYS_HASH
from auth_service.refresh import RefreshTokens, family_key
from auth_service.revocation import jti_key
from auth_service.sessions import RedisSessionStorage, SessionInfo
from auth_service.tokens import AccessTokens, InvalidToken
from auth_service.users import User, UserStore
from common.credentials import looks_like_jwt, looks_like_refresh_token, looks_like_session_id
from common.redis import RedisClient

INACTIVE: dict[str, Any] = {"active": False}


class Introspector:
    """Answers RFC 7662 questions about access tokens, refresh tokens and session ids."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        keys_in_redis: bool,
        access: AccessTokens,
        refresh: RefreshTokens,
        sessions: RedisSessionStorage,
        users: UserStore,
        clients: ClientRegistry,
        session_scope: str,
    ) -> None:
        self._redis = redis
        self._access = access
        self._refresh = refresh
        self._sessions = sessions
        self._users = users
        self._clients = clients
        self._session_scope = session_scope
        self._keys_in_redis = keys_in_redis

    async def introspect(self, token: str) -> dict[str, Any]:
        """The RFC 7662 response for `token`: its claims if active, else exactly INACTIVE.

        Each kind of credential has its own shape, so the token itself says where to look;
        the client's hint cannot make a credential of one kind pass as another.
        """
        if looks_like_jwt(token):
            claims = await self.active_access_token(token)
            return INACTIVE if claims is None else _response(claims, "access_token")
        if looks_like_refresh_token(token):
            record = await self._refresh.lookup(token)
            user = None if record is None else await self._user(record.user_id)
            if record is None or user is None:
                return INACTIVE
            return _response(
                {
                    "sub": record.user_id,
                    "username": user.username,
                    "scope": record.scope,
                    "client_id": record.client_id,
                    "exp": record.exp,
                    "iat": record.iat,
                    "jti": record.jti,
                    "sid": record.family,
                },
                "refresh_token",
            )
        if looks_like_session_id(token):
            info = await self.active_session(token)
            if info is None:
                return INACTIVE
            return _response(
                {
                    "sub": info.user_id,
                    "username": info.username,
                    "scope": self._session_scope,
                    "client_id": None,
                    "exp": info.exp,
                    "iat": info.iat,
                    "jti": info.sid,
                    "sid": info.sid,
                },
                "session",
            )
        return INACTIVE

    async def genuine_access_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this service signed and that has not expired, revoked or not."""
        try:
            return await self._access.verify(token)
        except InvalidToken:
            return None

    async def active_access_token(self, token: str) -> dict[str, Any] | None:
        claims = await self.genuine_access_token(token)
        if claims is None:
            return None
        return (await self._still_active([claims]))[0]

    async def introspect_many(self, tokens: Sequence[str]) -> list[dict[str, Any]]:
        """The RFC 7662 response for each of `tokens`, in order, each exactly what
        `introspect` answers for it; the access tokens' state is read in one round trip."""
        answers: list[dict[str, Any]] = [INACTIVE] * len(tokens)
        genuine: list[tuple[int, dict[str, Any]]] = []
        for index, token in enumerate(tokens):
            if looks_like_jwt(token):
                claims = await self.genuine_access_token(token)
                if claims is not None:
                    genuine.append((index, claims))
            elif looks_like_refresh_token(token) or looks_like_session_id(token):
                answers[index] = await self.introspect(token)  # rare here: one at a time
        if genuine:
            states = await self._still_active([claims for _, claims in genuine])
            for (index, _), claims in zip(genuine, states, strict=True):
                if claims is not None:
                    answers[index] = _response(claims, "access_token")
        return answers

    async def _still_active(
        self, verified: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any] | None]:
        """For each genuine token's claims: the claims (with the user's current name) if it
        is still active (not revoked, its family alive, its user present and enabled, its
        key kept), else None. One pipeline for all of them."""
        step = 4 if self._keys_in_redis else 3
        async with self._redis.pipeline(transaction=False) as pipe:
            for claims in verified:
                pipe.exists(jti_key(claims["jti"]))
                pipe.hget(family_key(str(claims.get("sid"))), "revoked")
                pipe.hmget(UserStore.key(claims["sub"]), ["username", "disabled"])
                if self._keys_in_redis:
                    # This replica's copy of the ring may be 30 s old: a key retired on
                    # another replica, or from the command line, must end its tokens now.
                    pipe.hexists(KEYS_HASH, claims["kid"])
            replies = await pipe.execute()
        return [
            await self._decide(claims, replies[n * step : (n + 1) * step])
            for n, claims in enumerate(verified)
        ]

    async def _decide(self, claims: dict[str, Any], replies: list[Any]) -> dict[str, Any] | None:
        sid = claims.get("sid")
        user_token = claims.get("username") is not None
        revoked, family_revoked, (username, disabled), *key_kept = replies
        if family_revoked is None and user_token and isinstance(sid, str):
            # A family from before the tag, not used since: asked for under its old name
            # only then, so every other token depends on its own keys' shards alone.
            family_revoked = await self._refresh.legacy_family_state(sid)
        if revoked or key_kept == [False]:
            return None
        if user_token:
            # A user's token must come from a live family and a present, enabled user.
            if not isinstance(sid, str) or family_revoked != "0":
                return None
            if username is None or disabled == "1":
                return None
            claims["username"] = username
        elif claims["sub"] != claims["client_id"] or not self._clients.known(claims["sub"]):
            return None
        return claims

    async def active_session(self, session_id: str) -> SessionInfo | None:
        info = await self._sessions.lookup(session_id)
        if info is None or await self._user(info.user_id) is None:
            return None
        return info

    async def _user(self, user_id: str) -> User | None:
        user = await self._users.by_id(user_id)
        return None if user is None or user.disabled else user


def _response(claims: dict[str, Any], token_type: str) -> dict[str, Any]:
    answer = {
        "active": True,
        "sub": claims["sub"],
        "username": claims.get("username"),
        "scope": claims["scope"],
        "client_id": claims.get("client_id"),
        "token_type": token_type,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
        "sid": claims.get("sid"),
    }
    if "kid" in claims:
        answer["kid"] = claims["kid"]  # an access token's signing key (RFC 7662 §2.2 allows more)
    return answer

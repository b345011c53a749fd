"""Browser sessions: aiohttp-session storage on Redis, and session lookup for introspection.

The cookie carries only a random session id (256 bits); the data lives server-side at
`auth:session:<id>` with the session's lifetime as its Redis TTL. A session that is emptied
(logout) is deleted from Redis, not left behind as an empty record, so its id dies at once.
Each session also has a public `sid` (random, unrelated to the cookie value) that may be named
in logs, introspection answers and revocation events.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp_session import AbstractStorage, Session

from auth_service.errors import invalid_request
from common.credentials import cookie_values, looks_like_session_id
from common.redis import RedisClient

PREFIX = "auth:session:"


@dataclass(frozen=True)
class SessionInfo:
    """A live session: who it belongs to and until when."""

    user_id: str
    username: str
    sid: str
    iat: int
    exp: int


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


class RedisSessionStorage(AbstractStorage):
    """aiohttp-session storage keeping session data in Redis under a random id."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        cookie_name: str,
        max_age: int,
        secure: bool,
        samesite: str,
    ) -> None:
        super().__init__(
            cookie_name=cookie_name,
            max_age=max_age,
            secure=secure,
            httponly=True,
            samesite=samesite,
        )
        self._redis = redis

    def cookie_value(self, request: web.Request) -> str | None:
        value = self.load_cookie(request)
        return value if value is not None and looks_like_session_id(value) else None

    async def load_session(self, request: web.Request) -> Session:
        key = self.cookie_value(request)
        raw = None if key is None else await self._redis.get(PREFIX + key)
        if key is None or raw is None:
            return Session(None, data=None, new=True, max_age=self.max_age)
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return Session(key, data=data, new=False, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        key = session.identity
        if session.empty:
            if key is not None:
                await self._redis.delete(PREFIX + str(key))
            self.save_cookie(response, "", max_age=session.max_age)
            return
        if key is None:
            key = new_session_id()
        await self._redis.set(
            PREFIX + str(key), json.dumps(self._get_session_data(session)), ex=session.max_age
        )
        self.save_cookie(response, str(key), max_age=session.max_age)

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(PREFIX + session_id)

    async def lookup(self, session_id: str) -> SessionInfo | None:
        """The live session behind a session id (the cookie value), or None."""
        if not looks_like_session_id(session_id):
            return None
        raw = await self._redis.get(PREFIX + session_id)
        if raw is None:
            return None
        return session_info(json.loads(raw).get("session") or {})


def one_session_cookie(cookie_name: str) -> Middleware:
    """Refuses (400) a request carrying the session cookie more than once. Cookies are not
    port-scoped, so another application on this host can plant a second one; which copy a
    parser keeps is an accident, and neither should be trusted."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if len(cookie_values(request.headers.getall("Cookie", ()), cookie_name)) > 1:
            raise invalid_request("the session cookie appears more than once")
        return await handler(request)

    return middleware


def session_info(data: object) -> SessionInfo | None:
    """Reads our fields out of a session's data; None if it is not a logged-in session."""
    if not isinstance(data, dict):
        return None
    try:
        info = SessionInfo(
            user_id=str(data["user_id"]),
            username=str(data["username"]),
            sid=str(data["sid"]),
            iat=int(data["iat"]),
            exp=int(data["exp"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return info if info.exp > time.time() else None


def start_session(session: Session, *, user_id: str, username: str, ttl: int) -> SessionInfo:
    now = int(time.time())
    info = SessionInfo(user_id, username, "s_" + secrets.token_hex(16), now, now + ttl)
    session.update(
        {"user_id": user_id, "username": username, "sid": info.sid, "iat": now, "exp": info.exp}
    )
    return info

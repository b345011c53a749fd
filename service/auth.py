"""Who is connecting: the ordered authenticator chain and the introspection client it uses.

Like Django REST framework's authentication classes, each authenticator returns an identity
(its scheme, good credential), None (not its scheme: ask the next one) or raises
`AuthFailed` (its scheme, bad credential): a presented-but-bad credential never falls through.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from service.connection import Identity
from service.settings import ChatSettings

log = logging.getLogger(__name__)

MAX_CREDENTIAL_LENGTH = 4096
# What each kind of credential the auth service issues looks like (see auth_service/tokens.py
# and sessions.py); anything else is refused without spending a request on it.
CREDENTIAL_SHAPES = {
    "access_token": re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"),
    "session": re.compile(r"^[A-Za-z0-9_-]{43}$"),
}
MAX_REASKS = 3
RECENT_REVOCATIONS_SECONDS = 60.0  # longer than any look-up or handshake may take
RECENT_REVOCATIONS_MAX = 10_000
INACTIVE: dict[str, Any] = {"active": False}
SUBPROTOCOL = "chat.v1"
BEARER_PREFIX = "bearer."


_Lookup = tuple[int, float, "asyncio.Task[dict[str, Any]]"]


class IntrospectionUnavailable(Exception):
    """The auth service could not answer (down, slow, or refusing our client credentials)."""


class AuthFailed(Exception):
    """The handshake is refused before the upgrade with this status and headers."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str]) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers

    def response(self) -> web.Response:
        return web.json_response(
            {"error": self.error, "error_description": self.description},
            status=self.status,
            headers=self.headers,
        )


def invalid_token(description: str = "the credential is invalid or expired") -> AuthFailed:
    return AuthFailed(
        401, "invalid_token", description, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


def no_credentials() -> AuthFailed:
    return AuthFailed(
        401, "unauthorized", "a credential is required", {"WWW-Authenticate": 'Bearer realm="chat"'}
    )


def forbidden_origin() -> AuthFailed:
    return AuthFailed(403, "forbidden_origin", "this Origin may not open /ws", {})


def auth_unavailable() -> AuthFailed:
    return AuthFailed(
        503, "temporarily_unavailable", "the auth service is unavailable", {"Retry-After": "2"}
    )


def _cache_key(token: str, hint: str) -> str:
    return hashlib.sha256(f"{hint}\0{token}".encode()).hexdigest()


class IntrospectionClient:
    """Asks the auth service's `/introspect` who holds a credential, with a short cache.

    Active answers are kept for `min(ttl, exp - now)`, inactive ones for `negative_ttl`;
    entries are keyed by a hash of the credential, never the credential itself. Concurrent
    look-ups of one credential share one request. Each revocation event (`revoked()`) drops
    the answers it names and is remembered for a minute, so that an answer computed before
    it but received after it is not believed (`revoked_since()`).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        client_id: str,
        client_secret: str,
        timeout: float,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
    ) -> None:
        self._session = session
        self._url = f"{url}/introspect"
        self._authorization = aiohttp.encode_basic_auth(client_id, client_secret)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        # key -> (generation when asked, monotonic time when asked, the request)
        self._inflight: dict[str, _Lookup] = {}
        self._generation = 0  # see forget_all()
        # (monotonic time, introspection field, value) of each revocation event
        self._recent: deque[tuple[float, str, str]] = deque(maxlen=RECENT_REVOCATIONS_MAX)
        self.requests = 0  # calls actually made to the auth service

    async def introspect(self, token: str, hint: str) -> dict[str, Any]:
        key = _cache_key(token, hint)
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > time.monotonic():
                return cached[1]
            del self._cache[key]
        for _ in range(MAX_REASKS):
            entry = self._inflight.get(key)
            if entry is None:
                task = asyncio.create_task(self._fetch(token, hint))
                entry = (self._generation, time.monotonic(), task)
                self._inflight[key] = entry
                task.add_done_callback(functools.partial(self._settle, key, entry))
            asked_at, started, task = entry
            # Shielded: one caller giving up (its client hung up) must not cancel the others'.
            answer = await asyncio.shield(task)
            if asked_at == self._generation:
                # A revocation that arrived while the answer was on its way may be newer.
                return INACTIVE if self.revoked_since(answer, started) else answer
            # Revocations may have been missed meanwhile (see forget_all): ask again. The
            # auth service records a revocation before announcing it.
            if self._inflight.get(key) is entry:
                del self._inflight[key]
        raise IntrospectionUnavailable("the revocation feed kept dropping during the look-up")

    def _settle(self, key: str, entry: _Lookup, _done: object) -> None:
        asked_at, started, task = entry
        if self._inflight.get(key) is entry:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if asked_at != self._generation or self.revoked_since(result, started):
            return  # possibly older than a revocation: not worth keeping
        if result.get("active") is True:
            ttl = min(self._ttl, float(result["exp"]) - time.time())
        else:
            ttl = self._negative_ttl
        if ttl <= 0:
            return
        if len(self._cache) >= self._max_entries:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry
        self._cache[key] = (time.monotonic() + ttl, result)

    async def _fetch(self, token: str, hint: str) -> dict[str, Any]:
        self.requests += 1
        try:
            async with self._session.post(
                self._url,
                data={"token": token, "token_type_hint": hint},
                headers={"Authorization": self._authorization},
                timeout=self._timeout,
            ) as response:
                if response.status != 200:
                    if response.status == 401:
                        log.error("the auth service refused our client credentials")
                    raise IntrospectionUnavailable(f"introspection answered {response.status}")
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise IntrospectionUnavailable(type(exc).__name__) from exc
        if not isinstance(body, dict) or not isinstance(body.get("active"), bool):
            raise IntrospectionUnavailable("introspection answered something unexpected")
        if body["active"] and not _well_formed(body):
            raise IntrospectionUnavailable("introspection answered an incomplete identity")
        return body

    def revoked(self, field: str, value: str) -> None:
        """A revocation event: whatever has `value` in its introspection `field` is dead."""
        self._recent.append((time.monotonic(), field, value))
        stale = [key for key, (_, answer) in self._cache.items() if answer.get(field) == value]
        for key in stale:
            del self._cache[key]

    def revoked_since(self, answer: Mapping[str, Any], since: float) -> bool:
        """Whether a revocation event naming `answer` arrived after `since` (monotonic)."""
        horizon = time.monotonic() - RECENT_REVOCATIONS_SECONDS
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        for stamp, field, value in reversed(self._recent):
            if stamp < since:
                break
            if answer.get(field) == value:
                return True
        return False

    def forget_all(self) -> None:
        """Revocation events may have been missed (the subscriber link was down): drops
        every cached answer and has every look-up still in flight asked again."""
        self._generation += 1
        self._cache.clear()


def _well_formed(body: dict[str, Any]) -> bool:
    return (
        isinstance(body.get("sub"), str)
        and isinstance(body.get("exp"), int | float)
        and isinstance(body.get("jti"), str)
        and isinstance(body.get("token_type"), str)
    )


class Authenticator(Protocol):
    """One way of presenting a credential at the handshake."""

    async def authenticate(self, request: web.Request) -> Identity | None: ...


class CredentialChecker:
    """Turns a credential into an `Identity` via introspection, or refuses it."""

    def __init__(self, client: IntrospectionClient, *, required_scope: str) -> None:
        self._client = client
        self._scope = required_scope
        self._unavailable = False

    async def identity(
        self, credential: str, *, token_type: str, source: str | None = None, offset: int = 0
    ) -> Identity:
        """`source` and `offset`: the string the credential is a part of, and where in it the
        credential starts, if the caller keeps that string anyway (see `Identity.source`)."""
        shape = CREDENTIAL_SHAPES.get(token_type)
        if (
            shape is None
            or len(credential) > MAX_CREDENTIAL_LENGTH
            or not shape.fullmatch(credential)
        ):
            raise invalid_token()  # not even the right shape: no need to ask anyone
        try:
            answer = await self._client.introspect(credential, token_type)
        except IntrospectionUnavailable as exc:
            if not self._unavailable:  # once per outage, not once per handshake
                log.warning("introspection unavailable", extra={"error": str(exc)})
                self._unavailable = True
            raise auth_unavailable() from exc
        if self._unavailable:
            log.info("introspection available again")
            self._unavailable = False
        if (
            answer.get("active") is not True
            or answer.get("token_type") != token_type
            or not isinstance(answer.get("username"), str)  # a user, not a service client
            or self._scope not in str(answer.get("scope", "")).split(" ")
        ):
            raise invalid_token()
        return Identity(
            user_id=answer["sub"],
            username=answer["username"],
            token_type=token_type,
            exp=int(answer["exp"]),
            jti=answer["jti"],
            sid=answer.get("sid"),
            source=credential if source is None else source,
            offset=0 if source is None else offset,
        )


class BearerHeaderAuthenticator:
    """`Authorization: Bearer <access token>`."""

    def __init__(self, checker: CredentialChecker) -> None:
        self._checker = checker

    async def authenticate(self, request: web.Request) -> Identity | None:
        header = request.headers.get("Authorization")
        if header is None or header[:7].lower() != "bearer ":
            return None
        # aiohttp strips the value's trailing whitespace, so the credential runs to its end.
        offset = len(header) - len(header[7:].lstrip())
        return await self._checker.identity(
            header[offset:], token_type="access_token", source=header, offset=offset
        )


class SubprotocolAuthenticator:
    """`Sec-WebSocket-Protocol: chat.v1, bearer.<access token>` (browsers cannot set headers)."""

    def __init__(self, checker: CredentialChecker) -> None:
        self._checker = checker

    async def authenticate(self, request: web.Request) -> Identity | None:
        # The handler has already refused an offer without chat.v1 (aiohttp would log it).
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        tokens = [p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)]
        if not tokens:
            return None
        if len(tokens) > 1:
            raise invalid_token("present one bearer subprotocol, not several")
        return await self._checker.identity(tokens[0], token_type="access_token")


class SessionCookieAuthenticator:
    """The auth service's session cookie, only from an allowed `Origin` (no cross-site
    WebSocket hijacking: a browser attaches the cookie whichever page opens the socket)."""

    def __init__(self, checker: CredentialChecker, *, cookie: str, origins: frozenset[str]) -> None:
        self._checker = checker
        self._cookie = cookie
        self._origins = origins

    async def authenticate(self, request: web.Request) -> Identity | None:
        session_id = request.cookies.get(self._cookie)
        if session_id is None:
            return None
        if request.headers.get("Origin") not in self._origins:
            raise forbidden_origin()
        return await self._checker.identity(session_id, token_type="session")


class HandshakeAuthenticator:
    """Runs the chain in order and applies the Origin policy; the first identity wins."""

    def __init__(self, chain: Sequence[Authenticator], settings: ChatSettings) -> None:
        self._chain = chain
        self._origins = settings.allowed_origins
        self._check_every_origin = settings.origin_policy == "always"

    async def authenticate(self, request: web.Request) -> Identity:
        origin = request.headers.get("Origin")
        if self._check_every_origin and origin is not None and origin not in self._origins:
            raise forbidden_origin()
        for authenticator in self._chain:
            identity = await authenticator.authenticate(request)
            if identity is not None:
                return identity
        raise no_credentials()


def build_authenticator(
    checker: CredentialChecker, settings: ChatSettings
) -> HandshakeAuthenticator:
    return HandshakeAuthenticator(
        [
            BearerHeaderAuthenticator(checker),
            SubprotocolAuthenticator(checker),
            SessionCookieAuthenticator(
                checker, cookie=settings.session_cookie, origins=settings.allowed_origins
            ),
        ],
        settings,
    )

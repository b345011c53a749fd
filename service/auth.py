"""Who is connecting: the ordered authenticator chain and the introspection client it uses.

Like Django REST framework's authentication classes, each authenticator returns an identity
(its scheme, good credential), None (not its scheme: ask the next one) or raises
`AuthFailed` (its scheme, bad credential): a presented-but-bad credential never falls through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from service.connection import Identity
from service.introspection import IntrospectionClient, IntrospectionUnavailable
from service.settings import ChatSettings

log = logging.getLogger(__name__)

MAX_CREDENTIAL_LENGTH = 4096
# What each kind of credential the auth service issues looks like (see auth_service/tokens.py
# and sessions.py); anything else is refused without spending a request on it.
CREDENTIAL_SHAPES = {
    "access_token": re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"),
    "session": re.compile(r"^[A-Za-z0-9_-]{43}$"),
}
SUBPROTOCOL = "chat.v1"
BEARER_PREFIX = "bearer."


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
            kid=answer.get("kid"),
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

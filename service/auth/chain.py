"""Who is connecting: the ordered authenticator chain and the introspection client it uses.

Like Django REST framework's authentication classes, each authenticator returns an identity
(its scheme, good credential), None (not its scheme: ask the next one) or raises
`Refused` (its scheme, bad credential): a presented-but-bad credential never falls through.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from common.credentials import bearer_offset, cookie_values, looks_like
from service.auth.handshake_failures import FailedHandshakes
from service.auth.identity import Identity
from service.auth.introspection import IntrospectionClient, IntrospectionUnavailable
from service.auth.refusal_alarm import RefusalAlarm
from service.auth.signing_keys import SigningKeys
from service.errors import (
    Refusal,
    Refused,
    auth_unavailable,
    duplicate_cookie,
    forbidden_origin,
    invalid_token,
    no_credentials,
)
from service.settings import ChatSettings

log = logging.getLogger(__name__)

SUBPROTOCOL = "chat.v1"
SERVER_SCOPE = "chat:server"  # a service's token for the chat HTTP API (docs/api.md)
BEARER_PREFIX = "bearer."


class Authenticator(Protocol):
    """One way of presenting a credential at the handshake."""

    async def authenticate(self, request: web.Request) -> Identity | None: ...


class CredentialChecker:
    """Turns a credential into an `Identity` via introspection, or refuses it.

    What can be refused without asking anyone is: a credential of the wrong shape, and (when
    its answer is not cached) an access token that `SigningKeys` proves forged or expired:
    by the cheap checks always, by its signature too while `alarm` says a flood of made-up
    tokens is under way.
    """

    def __init__(
        self,
        client: IntrospectionClient,
        keys: SigningKeys,
        *,
        required_scope: str,
        alarm: RefusalAlarm | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self.alarm = alarm or RefusalAlarm()
        self._scope = required_scope
        self._unavailable = False

    def key_retired(self, kid: str) -> None:
        self._keys.retire(kid)

    async def identity(
        self, credential: str, *, token_type: str, source: str | None = None, offset: int = 0
    ) -> Identity:
        """`source` and `offset`: the string the credential is a part of, and where in it the
        credential starts, if the caller keeps that string anyway (see `Identity.source`)."""
        answer = await self._introspected(credential, token_type)
        if not isinstance(answer.get("username"), str) or not self._has(answer, self._scope):
            raise invalid_token()  # a service client, or not for chat
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

    async def server(self, credential: str) -> str | None:
        """For a service's access token with the server scope, its client id; None for a
        user's token (ask `identity`); refuses anything else."""
        answer = await self._introspected(credential, "access_token")
        if answer.get("username") is not None:
            return None
        client_id = answer.get("client_id")
        if not isinstance(client_id, str) or not self._has(answer, SERVER_SCOPE):
            raise invalid_token("the token has neither the chat nor the chat:server scope")
        return client_id

    async def scopes(self, credential: str) -> tuple[str, ...]:
        """The scopes of an active access token, a user's or a service's; refuses anything
        else."""
        answer = await self._introspected(credential, "access_token")
        return tuple(str(answer.get("scope", "")).split(" "))

    @staticmethod
    def _has(answer: dict[str, Any], scope: str) -> bool:
        return scope in str(answer.get("scope", "")).split(" ")

    async def _introspected(self, credential: str, token_type: str) -> dict[str, Any]:
        """The auth service's answer for an active credential of `token_type`; refuses
        anything else (and what can be refused without asking, unasked)."""
        if token_type not in ("access_token", "session") or not looks_like(token_type, credential):
            raise invalid_token()  # not even the right shape: no need to ask anyone
        first_time = (
            token_type == "access_token" and self._client.cached(credential, token_type) is None
        )
        if first_time and await self._locally_refused(credential):
            raise invalid_token()  # forged, or signed by no key of ours, or expired
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
        if answer.get("active") is not True or answer.get("token_type") != token_type:
            if first_time:
                self.alarm.refused()
            raise invalid_token()
        return answer

    async def _locally_refused(self, token: str) -> bool:
        if self.alarm.armed:
            refused = await self._keys.check(token) is False
            if refused:
                self.alarm.refused()  # the flood goes on: stay armed
            return refused
        return self._keys.plausible(token) is False


class BearerHeaderAuthenticator:
    """`Authorization: Bearer <access token>`."""

    def __init__(self, checker: CredentialChecker) -> None:
        self._checker = checker

    async def authenticate(self, request: web.Request) -> Identity | None:
        header = request.headers.get("Authorization")
        offset = bearer_offset(header)
        if header is None or offset is None:
            return None
        # aiohttp strips the value's trailing whitespace, so the credential runs to its end.
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
        values = cookie_values(request.headers.getall("Cookie", ()), self._cookie)
        if not values:
            return None
        if request.headers.get("Origin") not in self._origins:
            raise forbidden_origin()
        if len(values) > 1:
            # Another application on this host may have planted one (cookies are not
            # port-scoped): which is ours cannot be told, so neither is used.
            raise duplicate_cookie()
        return await self._checker.identity(values[0], token_type="session")


class HandshakeAuthenticator:
    """Runs the chain in order and applies the Origin policy; the first identity wins. An
    address whose credentials keep being refused is refused before any is looked at."""

    def __init__(
        self, chain: Sequence[Authenticator], settings: ChatSettings, checker: CredentialChecker
    ) -> None:
        self._chain = chain
        self._checker = checker
        self._origins = settings.allowed_origins
        self._check_every_origin = settings.origin_policy == "always"
        self.failures = FailedHandshakes(
            settings.handshake_failures, settings.handshake_failure_window
        )

    async def authenticate(self, request: web.Request, *, token: str | None = None) -> Identity:
        """The identity of the request's credential or, when given, of `token`: an access
        token a protocol carries after the upgrade (Centrifugo's `connect` command), under
        the same Origin policy and failure limits."""
        address = request.remote or "unknown"
        self.failures.refuse_if_blocked(address)
        try:
            if token is not None:
                self._refuse_origin(request)
                return await self._checker.identity(token, token_type="access_token")
            return await self._identity(request)
        except Refused as refused:
            if refused.refusal is Refusal.INVALID_CREDENTIAL:
                self.failures.failed(address)
            raise

    def _refuse_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if self._check_every_origin and origin is not None and origin not in self._origins:
            raise forbidden_origin()

    async def _identity(self, request: web.Request) -> Identity:
        self._refuse_origin(request)
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
        checker,
    )

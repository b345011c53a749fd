"""Whether a WebSocket handshake may proceed, decided before the upgrade.

`Handshake.admit` checks, in order: that the request is an upgrade offering `chat.v1` (if it
offers subprotocols at all), that this process has room, who holds the credential (the
authenticator chain, with its Origin policy and failure limits), that it has not expired,
and the per-process and per-user limits (the latter across all instances); it returns the
identity with its slots reserved, or raises `Refused`. What a refusal looks like on the wire
is the view's business.
"""

from __future__ import annotations

import time

from aiohttp import web

from service.auth.chain import SUBPROTOCOL, HandshakeAuthenticator
from service.auth.identity import Identity
from service.auth.introspection import IntrospectionClient
from service.broker.base import UNAVAILABLE
from service.errors import Refusal, Refused, invalid_token
from service.metrics import ChatMetrics
from service.settings import ChatSettings
from service.user_sockets import UserSockets


class Admission:
    """The sockets this process holds, against its limit (the per-user limit is across all
    instances: `UserSockets`)."""

    def __init__(self, max_connections: int) -> None:
        self._max = max_connections
        self._total = 0

    def refuse_if_full(self) -> None:
        if self._total >= self._max:
            raise Refused(Refusal.SERVER_FULL, "this server is full", retry_after=5)

    def admit(self) -> None:
        """Reserves a slot, or refuses; every admit is paired with a release."""
        self.refuse_if_full()
        self._total += 1

    def release(self) -> None:
        self._total -= 1


class Handshake:
    """Admits the handshakes of one process (see the module's docstring)."""

    def __init__(
        self,
        settings: ChatSettings,
        authenticator: HandshakeAuthenticator,
        introspection: IntrospectionClient,
        user_sockets: UserSockets,
        metrics: ChatMetrics,
    ) -> None:
        self.authenticator = authenticator
        self._metrics = metrics
        self.admission = Admission(settings.max_connections)
        # Sockets upgraded before their credential (Centrifugo's `connect` carries it) wait
        # here, not in `admission`: holding them, nobody could fill the server's slots.
        self.pending = Admission(settings.centrifugo_max_pending)
        self._introspection = introspection
        self._user_sockets = user_sockets
        self._per_user = settings.max_connections_per_user

    async def admit(self, request: web.Request, ws: web.WebSocketResponse) -> Identity:
        """The identity, with its slots (this process's, and its user's across all
        instances) reserved: every admit is paired with a `release`. Counted by outcome."""
        try:
            identity = await self._admit(request, ws)
        except Refused as refused:
            self._metrics.handshake_refused(refused)
            raise
        self._metrics.handshake_accepted.inc()
        return identity

    async def _admit(self, request: web.Request, ws: web.WebSocketResponse) -> Identity:
        _check_upgrade(request, ws)
        # A full server refuses before it spends a look-up on the credential.
        self.admission.refuse_if_full()
        identity = await self.identify(request)
        self.admission.admit()
        try:
            await self.admit_user(identity)
        except BaseException:
            self.admission.release()
            raise
        return identity

    async def admit_connect(self, request: web.Request, token: str | None) -> Identity:
        """`admit` for a socket upgraded before its credential (Centrifugo's `connect`
        carries it): the identity with its user's slot reserved (paired with
        `release_user`). Counted by outcome like every handshake."""
        try:
            identity = await self.identify(request, token=token)
            await self.admit_user(identity)
        except Refused as refused:
            self._metrics.handshake_refused(refused)
            raise
        self._metrics.handshake_accepted.inc()
        return identity

    async def identify(self, request: web.Request, *, token: str | None = None) -> Identity:
        """Who holds the request's credential (or `token`, one sent after the upgrade), if
        it has not expired; raises `Refused` otherwise."""
        identity = await self.authenticator.authenticate(request, token=token)
        if identity.exp <= time.time():
            raise invalid_token("the credential has expired")
        return identity

    async def admit_user(self, identity: Identity) -> None:
        """Reserves one of the user's slots across all instances, or refuses; paired with
        `release_user` (or `release`, when `admit` also took this process's slot)."""
        try:
            admitted = await self._user_sockets.admit(identity.user_id)
        except UNAVAILABLE as exc:
            raise Refused(
                Refusal.UNAVAILABLE, "cannot admit connections now", retry_after=2
            ) from exc
        if not admitted:
            raise Refused(
                Refusal.TOO_MANY_FOR_USER,
                f"at most {self._per_user} sockets per user",
                retry_after=5,
            )

    def release_user(self, identity: Identity) -> None:
        self._user_sockets.release(identity.user_id)

    def release(self, identity: Identity) -> None:
        self.admission.release()
        self.release_user(identity)

    def revoked_since(self, identity: Identity, since: float) -> bool:
        """Whether a revocation of `identity` arrived after `since` (monotonic): closes the
        window between the credential's check and its socket joining the hub."""
        return self._introspection.revoked_since(identity.names(), since)


def _check_upgrade(request: web.Request, ws: web.WebSocketResponse) -> None:
    offered = request.headers.get("Sec-WebSocket-Protocol")
    if offered is not None and SUBPROTOCOL not in (p.strip() for p in offered.split(",")):
        # Refused before aiohttp sees it: aiohttp would log the offered list, token included.
        raise Refused(Refusal.NO_SUBPROTOCOL, f"offer the {SUBPROTOCOL} subprotocol")
    if not ws.can_prepare(request).ok:
        raise Refused(Refusal.NOT_AN_UPGRADE, "a WebSocket upgrade is required")

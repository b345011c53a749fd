"""Whether a WebSocket handshake may proceed, decided before the upgrade.

`Handshake.admit` checks, in order: that the request is an upgrade offering `chat.v1` (if it
offers subprotocols at all), that this process has room, who holds the credential (the
authenticator chain, with its Origin policy and failure limits), that it has not expired,
and the per-user and per-process limits; it returns the identity with its slot reserved, or
raises `Refused`. What a refusal looks like on the wire is the view's business.
"""

from __future__ import annotations

import time
from collections import Counter

from aiohttp import web

from service.auth.chain import SUBPROTOCOL, HandshakeAuthenticator
from service.auth.identity import Identity
from service.auth.introspection import IntrospectionClient
from service.errors import Refusal, Refused, invalid_token
from service.settings import ChatSettings


class Admission:
    """The sockets this process holds, in all and per user, against their limits."""

    def __init__(self, max_connections: int, max_per_user: int) -> None:
        self._max = max_connections
        self._max_per_user = max_per_user
        self._total = 0
        self._per_user: Counter[str] = Counter()

    def refuse_if_full(self) -> None:
        if self._total >= self._max:
            raise Refused(Refusal.SERVER_FULL, "this server is full", retry_after=5)

    def admit(self, identity: Identity) -> None:
        """Reserves a slot for `identity`, or refuses; every admit is paired with a release."""
        self.refuse_if_full()
        if self._per_user[identity.user_id] >= self._max_per_user:
            raise Refused(
                Refusal.TOO_MANY_FOR_USER,
                f"at most {self._max_per_user} sockets per user",
                retry_after=5,
            )
        self._total += 1
        self._per_user[identity.user_id] += 1

    def release(self, identity: Identity) -> None:
        self._total -= 1
        self._per_user[identity.user_id] -= 1
        if not self._per_user[identity.user_id]:
            del self._per_user[identity.user_id]


class Handshake:
    """Admits the handshakes of one process (see the module's docstring)."""

    def __init__(
        self,
        settings: ChatSettings,
        authenticator: HandshakeAuthenticator,
        introspection: IntrospectionClient,
    ) -> None:
        self.authenticator = authenticator
        self.admission = Admission(settings.max_connections, settings.max_connections_per_user)
        self._introspection = introspection

    async def admit(self, request: web.Request, ws: web.WebSocketResponse) -> Identity:
        _check_upgrade(request, ws)
        # A full server refuses before it spends a look-up on the credential.
        self.admission.refuse_if_full()
        identity = await self.authenticator.authenticate(request)
        if identity.exp <= time.time():
            raise invalid_token("the credential has expired")
        self.admission.admit(identity)
        return identity

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

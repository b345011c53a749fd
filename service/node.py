"""The chat node: one process's sockets, rooms, broker link and view of identity, wired
together; it keeps identity true (revocation events, re-validation after a missed one) and
shuts down cleanly. What each command does is `service/native/commands.py`."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets

from common import revocation_events
from common.backoff import Backoff
from service.auth.chain import CredentialChecker
from service.auth.introspection import IntrospectionClient
from service.broker.base import Broker
from service.centrifugo.commands import CentrifugoCommands
from service.connection import Connection
from service.control import CHANNEL as CONTROL_CHANNEL
from service.control import Control
from service.errors import GOING_AWAY, REVOKED, Refusal, Refused
from service.handshake import Handshake
from service.metrics import ChatMetrics
from service.native.commands import Commands
from service.outgoing import WriteBatch
from service.rate_guard import RateLimit
from service.registry import Sockets
from service.rooms.access import RoomAccess
from service.rooms.hub import RoomHub
from service.rooms.stores import RoomStores
from service.settings import ChatSettings
from service.token_refresh import TokenRefresh

log = logging.getLogger(__name__)

REVOCATION_CHANNEL = revocation_events.CHANNEL
REVALIDATION_CONCURRENCY = 32
STOP_LEASE_WITHIN = 5.0  # seconds a shutdown spends giving its lease back


class ChatNode:
    """One chat process: its sockets, rooms, broker link and view of identity."""

    def __init__(
        self,
        settings: ChatSettings,
        broker: Broker,
        stores: RoomStores,
        introspection: IntrospectionClient,
        checker: CredentialChecker,
        handshake: Handshake,
        metrics: ChatMetrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.broker = broker
        self.sockets = Sockets()
        self.writes = WriteBatch()  # what the sockets hold this loop turn, written at its end
        self.stores = stores
        boot = secrets.token_hex(3)
        message_ids = (f"{settings.instance_id}-{boot}-{n}" for n in itertools.count(1))
        self.hub = RoomHub(
            broker,
            stores.history,
            settings.namespaces,
            stores.private,
            stores.tracker,
            message_ids,
            metrics,
        )
        self.private = stores.private
        self.control = Control(stores.publish, self.sockets)
        self.access = RoomAccess(settings.namespaces, stores.private)
        self.introspection = introspection
        self.checker = checker
        self.handshake = handshake
        self.refresher = TokenRefresh(checker, self.sockets, grace=settings.expiry_grace)
        self.commands = Commands(settings, self.hub, self.access, stores.presence, self.refresher)
        self.centrifugo = CentrifugoCommands(
            settings, self.hub, self.access, stores.presence, self.refresher
        )
        self._connection_ids = (f"{settings.instance_id}-{boot}-c{n}" for n in itertools.count(1))
        self._revalidation: asyncio.Task[None] | None = None
        self._revalidate_again = False
        self.rate_limit = RateLimit(
            settings.rate_per_second, settings.rate_burst, settings.rate_strikes
        )

    def next_connection_id(self) -> str:
        return next(self._connection_ids)

    # -- the broker's event channels -----------------------------------------------------------

    def event(self, channel: str, payload: bytes) -> None:
        if channel == CONTROL_CHANNEL:
            self.control.event(payload)
        if channel != REVOCATION_CHANNEL:
            return
        revoked = revocation_events.decode(payload)
        if revoked is None:
            log.warning("ignored a malformed revocation event")
            return
        field, value = revoked
        self.introspection.revoked(field, value)
        if field == "kid":
            self.checker.key_retired(value)
        for connection in self.sockets.holding(field, value):
            connection.close_soon(REVOKED)

    def link_restored(self) -> None:
        # Revocations published while the link was down are lost (pub/sub is at-most-once):
        # check every credential again. (The rooms repair themselves: see RoomHub.)
        self._revalidate_again = True  # a run in progress may have started before this loss
        if self._revalidation is None or self._revalidation.done():
            self._revalidation = asyncio.create_task(self._revalidate_until_settled())

    async def _revalidate_until_settled(self) -> None:
        backoff = Backoff(base=0.5, cap=30.0)
        while self._revalidate_again:
            self._revalidate_again = False
            try:
                await self.revalidate_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("re-validation failed; retrying")
                self._revalidate_again = True
                await asyncio.sleep(backoff.next())

    async def revalidate_all(self) -> None:
        """Asks the auth service again about every live connection's credential: one request
        per distinct credential (coalesced), `REVALIDATION_CONCURRENCY` at a time (batched),
        retrying with backoff those it could not answer until it does or their sockets end."""
        self.introspection.forget_all()
        pending: dict[tuple[str, str], list[Connection]] = {}
        for connection in self.sockets:
            if not connection.closing:
                key = (connection.identity.credential, connection.identity.token_type)
                pending.setdefault(key, []).append(connection)
        checked = len(pending)
        slots = asyncio.Semaphore(REVALIDATION_CONCURRENCY)
        backoff = Backoff(base=0.5, cap=30.0)

        async def answered(credential: str, hint: str, holders: list[Connection]) -> bool:
            async with slots:
                try:
                    identity = await self.checker.identity(credential, token_type=hint)
                except Refused as refused:
                    if refused.refusal is Refusal.AUTH_UNAVAILABLE:
                        return False  # the auth service could not answer: ask again later
                    log.info(
                        "re-validation refused a credential",
                        extra={"refusal": refused.refusal.name, "sockets": len(holders)},
                    )
                    identity = None
            for connection in holders:
                if identity is None or identity.user_id != connection.identity.user_id:
                    connection.close_soon(REVOKED)
            return True

        while pending:
            keys = list(pending)
            results = await asyncio.gather(*(answered(*key, pending[key]) for key in keys))
            pending = {
                key: live
                for key, done in zip(keys, results, strict=True)
                if not done and (live := [c for c in pending[key] if not c.closing])
            }
            if pending:
                log.warning(
                    "re-validation waits for the auth service", extra={"left": len(pending)}
                )
                await asyncio.sleep(backoff.next())
        log.info("re-validated live connections", extra={"credentials": checked})

    async def shutdown(self) -> None:
        if self._revalidation is not None:
            self._revalidation.cancel()
            await asyncio.gather(self._revalidation, return_exceptions=True)
        connections = list(self.sockets)
        for connection in connections:
            connection.close_soon(GOING_AWAY)
        await asyncio.gather(*(c.wait_closed() for c in connections))
        await self.stores.tracker.drain()  # closed sockets leave presence after the grace
        await self.stores.user_sockets.drain()
        try:
            async with asyncio.timeout(STOP_LEASE_WITHIN):
                await self.stores.lease.stop()
        except TimeoutError:
            log.warning("could not give the instance lease back in time; it will lapse")

"""The chat node: wires hub, broker and auth together and carries out client commands."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from common import revocation_events
from common.backoff import Backoff
from service import protocol
from service.auth.chain import CredentialChecker
from service.auth.introspection import IntrospectionClient
from service.broker.base import Broker, BrokerUnavailable
from service.connection import Connection, RateLimit
from service.errors import GOING_AWAY, REVOKED, Refusal, Refused
from service.handshake import Handshake
from service.hub import RoomHub
from service.protocol import Command, ProtocolError
from service.settings import ChatSettings

log = logging.getLogger(__name__)

REVOCATION_CHANNEL = revocation_events.CHANNEL
REVALIDATION_CONCURRENCY = 32


class ChatNode:
    """One chat process: its connections (hub), its broker link and its view of identity."""

    def __init__(
        self,
        settings: ChatSettings,
        broker: Broker,
        introspection: IntrospectionClient,
        checker: CredentialChecker,
        handshake: Handshake,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.hub = RoomHub(broker)
        self.introspection = introspection
        self.checker = checker
        self.handshake = handshake
        boot = secrets.token_hex(3)
        self._message_ids = (f"{settings.instance_id}-{boot}-{n}" for n in itertools.count(1))
        self._connection_ids = (f"{settings.instance_id}-{boot}-c{n}" for n in itertools.count(1))
        self._revalidation: asyncio.Task[None] | None = None
        self._revalidate_again = False
        self.rate_limit = RateLimit(
            settings.rate_per_second, settings.rate_burst, settings.rate_strikes
        )

    def next_connection_id(self) -> str:
        return next(self._connection_ids)

    # -- broker callbacks --------------------------------------------------------------------

    def room_message(self, room: str, payload: bytes) -> None:
        self.hub.deliver(room, payload)

    def event(self, channel: str, payload: bytes) -> None:
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
        for connection in self.hub.holding(field, value):
            connection.close_soon(REVOKED)

    def link_restored(self) -> None:
        # Whatever was published while the link was down is lost (pub/sub is at-most-once):
        # tell each socket which of its rooms may have a gap, and, since revocations may have
        # been among the losses, check every credential again.
        for connection in self.hub.connections:
            if connection.rooms:
                connection.send(protocol.encode({"type": "gap", "rooms": sorted(connection.rooms)}))
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
        for connection in self.hub.connections:
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

    # -- client commands ---------------------------------------------------------------------

    async def handle(self, connection: Connection, data: str) -> None:
        try:
            command = protocol.parse(data, max_text=self.settings.max_text)
            await self._dispatch(connection, command)
        except ProtocolError as error:
            connection.send(protocol.error(error.code, error.message, error.ref))

    async def _dispatch(self, connection: Connection, command: Command) -> None:
        handler: Callable[[Connection, Command], Any] = getattr(self, f"_op_{command.op}")
        await handler(connection, command)

    async def _op_ping(self, connection: Connection, command: Command) -> None:
        connection.send(protocol.reply({"type": "pong"}, command.ref))

    async def _op_join(self, connection: Connection, command: Command) -> None:
        room = command.room
        if room not in connection.rooms:
            if len(connection.rooms) >= self.settings.max_rooms:
                raise ProtocolError(
                    "too_many_rooms", f"at most {self.settings.max_rooms} rooms", command.ref
                )
            try:
                await self.hub.join(room, connection)
            except BrokerUnavailable:
                raise ProtocolError("unavailable", "cannot join now; retry", command.ref) from None
        connection.send(protocol.reply({"type": "joined", "room": room}, command.ref))

    async def _op_leave(self, connection: Connection, command: Command) -> None:
        if command.room not in connection.rooms:
            raise ProtocolError("not_joined", "you are not in that room", command.ref)
        await self.hub.leave(command.room, connection)
        connection.send(protocol.reply({"type": "left", "room": command.room}, command.ref))

    async def _op_send(self, connection: Connection, command: Command) -> None:
        if command.room not in connection.rooms:
            raise ProtocolError("not_joined", "join the room before sending to it", command.ref)
        message_id = next(self._message_ids)
        frame = protocol.encode(
            {
                "type": "message",
                "room": command.room,
                "id": message_id,
                "from": connection.identity.public(),  # from the credential, never the frame
                "text": command.text,
                "ts": round(time.time(), 3),
            }
        )
        try:
            await self.broker.publish(command.room, frame)
        except BrokerUnavailable:
            raise ProtocolError(
                "unavailable", "the message was not sent; retry", command.ref
            ) from None
        connection.send(protocol.encode({"type": "ack", "ref": command.ref, "id": message_id}))

    async def _op_refresh(self, connection: Connection, command: Command) -> None:
        try:
            identity = await self.checker.identity(command.token, token_type="access_token")
        except Refused as refused:
            if refused.refusal is Refusal.AUTH_UNAVAILABLE:
                raise ProtocolError(
                    "unavailable", "cannot check the token now", command.ref
                ) from None
            raise ProtocolError(
                "bad_token", "the token is invalid or expired", command.ref
            ) from None
        if identity.user_id != connection.identity.user_id:
            raise ProtocolError("wrong_user", "the token belongs to another user", command.ref)
        self.hub.reidentify(connection, identity)
        connection.expire_at(identity.exp + self.settings.expiry_grace)
        connection.send(
            protocol.reply({"type": "refreshed", "expires_at": identity.exp}, command.ref)
        )

    async def shutdown(self) -> None:
        if self._revalidation is not None:
            self._revalidation.cancel()
            await asyncio.gather(self._revalidation, return_exceptions=True)
        connections = list(self.hub.connections)
        for connection in connections:
            connection.close_soon(GOING_AWAY)
        await asyncio.gather(*(c.wait_closed() for c in connections))

"""What each native command does (docs/protocol.md, "Frames"): one branch per op."""

from __future__ import annotations

import time
from collections.abc import Iterator

from redis.exceptions import RedisError

from common.redis import REDIS_ERRORS
from service.auth.chain import CredentialChecker
from service.broker.base import BrokerUnavailable
from service.errors import Refusal, Refused
from service.native import frames
from service.native.frames import Command, ProtocolError
from service.native.socket import NativeSocket
from service.registry import Sockets
from service.rooms.hub import RoomHub
from service.rooms.namespaces import Policy
from service.rooms.room import Joined, Since
from service.settings import ChatSettings

# A Redis or broker failure while carrying out a command: the client is told to retry.
UNAVAILABLE: tuple[type[Exception], ...] = (BrokerUnavailable, RedisError, *REDIS_ERRORS)


class Commands:
    """Carries out the frames of native sockets against the rooms and the credential checker."""

    def __init__(
        self,
        settings: ChatSettings,
        hub: RoomHub,
        sockets: Sockets,
        checker: CredentialChecker,
        message_ids: Iterator[str],
    ) -> None:
        self._settings = settings
        self._hub = hub
        self._sockets = sockets
        self._checker = checker
        self._message_ids = message_ids

    async def handle(self, socket: NativeSocket, data: str) -> None:
        try:
            command = frames.parse(data, max_text=self._settings.max_text)
            match command.op:
                case "join":
                    await self._join(socket, command)
                case "leave":
                    await self._leave(socket, command)
                case "send":
                    await self._send(socket, command)
                case "history":
                    await self._history(socket, command)
                case "ping":
                    socket.send(frames.reply({"type": "pong"}, command.ref))
                case "refresh":
                    await self._refresh(socket, command)
        except ProtocolError as error:
            socket.send(frames.error(error.code, error.message, error.ref))

    def _policy(self, command: Command) -> Policy:
        policy = self._hub.policy(command.room)
        if policy is None:
            raise ProtocolError(
                "unknown_namespace", "no namespace of that name is configured", command.ref
            )
        return policy

    async def _join(self, socket: NativeSocket, command: Command) -> None:
        policy = self._policy(command)
        room = command.room
        if room not in socket.rooms and len(socket.rooms) >= self._settings.max_rooms:
            raise ProtocolError(
                "too_many_rooms", f"at most {self._settings.max_rooms} rooms", command.ref
            )
        since = None if command.since is None else Since(*command.since)

        def announce(outcome: Joined) -> None:
            joined = frames.joined(room, outcome.epoch, outcome.offset, outcome.recovered)
            socket.send(frames.reply(joined, command.ref))

        try:
            await self._hub.join(room, socket, policy, since=since, announce=announce)
        except UNAVAILABLE:
            raise ProtocolError("unavailable", "cannot join now; retry", command.ref) from None

    async def _leave(self, socket: NativeSocket, command: Command) -> None:
        if command.room not in socket.rooms:
            raise ProtocolError("not_joined", "you are not in that room", command.ref)
        await self._hub.leave(command.room, socket)
        socket.send(frames.reply({"type": "left", "room": command.room}, command.ref))

    async def _send(self, socket: NativeSocket, command: Command) -> None:
        policy = self._policy(command)
        if command.room not in socket.rooms:
            raise ProtocolError("not_joined", "join the room before sending to it", command.ref)
        message_id = next(self._message_ids)
        identity = socket.identity
        frame = frames.message_parts(
            command.room,
            message_id,
            identity.public(),  # from the credential, never the frame
            command.text,
            time.time(),
        )
        key = command.idempotency_key
        try:
            published = await self._hub.publish(
                command.room,
                policy,
                frame,
                message_id=message_id,
                idempotency=None if key is None else (identity.user_id, key),
            )
        except UNAVAILABLE:
            raise ProtocolError(
                "unavailable", "the message was not sent; retry", command.ref
            ) from None
        ack: dict[str, object] = {"type": "ack", "ref": command.ref, "id": published.message_id}
        if published.offset is not None:
            ack["offset"] = published.offset
        socket.send(frames.encode(ack))

    async def _history(self, socket: NativeSocket, command: Command) -> None:
        policy = self._policy(command)
        try:
            epoch, stored = await self._hub.page(
                command.room, policy, before=command.before, limit=command.limit
            )
        except UNAVAILABLE:
            raise ProtocolError(
                "unavailable", "cannot read history now; retry", command.ref
            ) from None
        socket.send(frames.history(command.room, epoch, [s.frame for s in stored], command.ref))

    async def _refresh(self, socket: NativeSocket, command: Command) -> None:
        try:
            identity = await self._checker.identity(command.token, token_type="access_token")
        except Refused as refused:
            if refused.refusal is Refusal.AUTH_UNAVAILABLE:
                raise ProtocolError(
                    "unavailable", "cannot check the token now", command.ref
                ) from None
            raise ProtocolError(
                "bad_token", "the token is invalid or expired", command.ref
            ) from None
        if identity.user_id != socket.identity.user_id:
            raise ProtocolError("wrong_user", "the token belongs to another user", command.ref)
        self._sockets.reidentify(socket, identity)
        socket.expire_at(identity.exp + self._settings.expiry_grace)
        socket.send(frames.reply({"type": "refreshed", "expires_at": identity.exp}, command.ref))

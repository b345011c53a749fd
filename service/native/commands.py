"""What each native command does (docs/protocol.md, "Frames"): one branch per op."""

from __future__ import annotations

from service.broker.base import UNAVAILABLE
from service.native import frames
from service.native.frames import Command, ProtocolError
from service.native.socket import NativeSocket
from service.rooms.access import Decision, Verdict
from service.rooms.member import Joined, NotAllowed, Since
from service.rooms.namespaces import Policy
from service.socket_commands import SocketCommands, actor_of
from service.token_refresh import RefreshFailure, RefreshRefused


class Commands(SocketCommands):
    """Carries out the frames of native sockets against the rooms and the credential checker."""

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
                case "presence":
                    await self._presence(socket, command)
                case "ping":
                    socket.send(frames.reply({"type": "pong"}, command.ref))
                case "refresh":
                    await self._refresh(socket, command)
        except ProtocolError as error:
            socket.send(frames.error(error.code, error.message, error.ref))

    @staticmethod
    def _allowed(decision: Decision, command: Command) -> Policy:
        """The room's policy when allowed; the refusal as an error frame otherwise."""
        if decision.policy is not None and decision.allowed:
            return decision.policy
        verdict = decision.verdict
        if verdict is Verdict.NO_SUCH_ROOM:  # a server's verdict: a socket is a user's
            verdict = Verdict.FORBIDDEN
        raise ProtocolError(verdict.value, _REFUSED[verdict], command.ref)

    async def _join(self, socket: NativeSocket, command: Command) -> None:
        room = command.room
        actor = actor_of(socket)
        policy = self._allowed(await self._access.to_join(actor, room), command)
        if room not in socket.rooms and len(socket.rooms) >= self._settings.max_rooms:
            raise ProtocolError(
                "too_many_rooms", f"at most {self._settings.max_rooms} rooms", command.ref
            )
        since = None if command.since is None else Since(*command.since)

        def announce(outcome: Joined) -> None:
            joined = frames.joined(room, outcome.epoch, outcome.offset, outcome.recovered)
            socket.send(frames.reply(joined, command.ref))

        async def recheck() -> bool:
            return await self._access.still_allowed(actor, room, policy)

        try:
            await self._hub.join(
                room, socket, policy, since=since, announce=announce, recheck=recheck
            )
        except NotAllowed:
            raise ProtocolError("forbidden", _REFUSED[Verdict.FORBIDDEN], command.ref) from None
        except UNAVAILABLE:
            raise ProtocolError("unavailable", "cannot join now; retry", command.ref) from None

    async def _leave(self, socket: NativeSocket, command: Command) -> None:
        if command.room not in socket.rooms:
            raise ProtocolError("not_joined", "you are not in that room", command.ref)
        await self._hub.leave(command.room, socket)
        socket.send(frames.reply({"type": "left", "room": command.room}, command.ref))

    async def _send(self, socket: NativeSocket, command: Command) -> None:
        joined = command.room in socket.rooms
        decision = await self._access.to_send(actor_of(socket), command.room, joined=joined)
        policy = self._allowed(decision, command)
        if not joined:
            raise ProtocolError("not_joined", "join the room before sending to it", command.ref)
        try:
            published = await self._hub.post(
                command.room, policy, actor_of(socket), command.text, key=command.idempotency_key
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
        policy = self._allowed(await self._access.to_read(actor_of(socket), command.room), command)
        try:
            epoch, stored = await self._hub.page(
                command.room, policy, before=command.before, limit=command.limit
            )
        except UNAVAILABLE:
            raise ProtocolError(
                "unavailable", "cannot read history now; retry", command.ref
            ) from None
        socket.send(frames.history(command.room, epoch, [s.frame for s in stored], command.ref))

    async def _presence(self, socket: NativeSocket, command: Command) -> None:
        policy = self._allowed(await self._access.to_read(actor_of(socket), command.room), command)
        if not policy.presence:
            raise ProtocolError(
                "presence_disabled", "this room's namespace keeps no presence", command.ref
            )
        try:
            count, members = await self._presence_store.query(command.room)
        except UNAVAILABLE:
            raise ProtocolError(
                "unavailable", "cannot read presence now; retry", command.ref
            ) from None
        listed = [
            {"id": m.id, "username": m.username, "connections": m.connections} for m in members
        ]
        socket.send(frames.presence(command.room, count, listed, command.ref))

    async def _refresh(self, socket: NativeSocket, command: Command) -> None:
        try:
            identity = await self._refresher.refresh(socket, command.token)
        except RefreshRefused as refused:
            code, message = _REFRESH_REFUSED[refused.failure]
            raise ProtocolError(code, message, command.ref) from None
        socket.send(frames.reply({"type": "refreshed", "expires_at": identity.exp}, command.ref))


_REFRESH_REFUSED = {
    RefreshFailure.UNAVAILABLE: ("unavailable", "cannot check the token now"),
    RefreshFailure.BAD_TOKEN: ("bad_token", "the token is invalid or expired"),
    RefreshFailure.WRONG_USER: ("wrong_user", "the token belongs to another user"),
}

# What each refusal says (the code is the verdict's value).
_REFUSED = {
    Verdict.FORBIDDEN: "you may not do that in this room",
    Verdict.BAD_ROOM: "a DM room is dm:<username>,<username>, lower case and sorted",
    Verdict.UNKNOWN_NAMESPACE: "no namespace of that name is configured",
}

"""What each Centrifugo command does once a socket is connected (docs/centrifugo.md): one
branch per method, each onto the same room engine, policies, presence and token refresh the
native protocol uses; only the frames differ."""

from __future__ import annotations

from typing import Any

from service.broker.base import UNAVAILABLE
from service.centrifugo import codes, frames
from service.centrifugo.frames import BAD_REQUEST, Command, ReplyError
from service.centrifugo.socket import CentrifugoSocket
from service.rate_guard import RateGuard
from service.rooms.access import Decision, Verdict
from service.rooms.member import NotAllowed, Since
from service.rooms.namespaces import Policy
from service.socket_commands import SocketCommands, actor_of
from service.token_refresh import RefreshFailure, RefreshRefused

MAX_HISTORY = 100  # publications per history answer (our history pages are 100 at most)
REJECT_UNRECOVERED = 2  # a subscribe flag: answer 112 rather than recovered false

# Each refusal of the rooms' policy as a Centrifugo error (a server's NO_SUCH_ROOM cannot
# happen to a user's socket; it is refused like FORBIDDEN, as on /ws).
_REFUSED = {
    Verdict.FORBIDDEN: (frames.PERMISSION_DENIED, "permission denied"),
    Verdict.NO_SUCH_ROOM: (frames.PERMISSION_DENIED, "permission denied"),
    Verdict.BAD_ROOM: (
        frames.UNKNOWN_CHANNEL,
        "a DM room is dm:<username>,<username>, lower case and sorted",
    ),
    Verdict.UNKNOWN_NAMESPACE: (frames.UNKNOWN_CHANNEL, "unknown channel"),
}


def refused(verdict: Verdict) -> ReplyError:
    return ReplyError(*_REFUSED[verdict])


def unavailable(what: str) -> ReplyError:
    return ReplyError(frames.INTERNAL, f"cannot {what} now; retry", temporary=True)


class CentrifugoCommands(SocketCommands):
    """Carries out the commands of connected Centrifugo sockets."""

    async def handle(self, socket: CentrifugoSocket, commands: list[Command]) -> None:
        """Runs a frame's commands in order; stops at one that closes the socket."""
        for command in commands:
            if socket.closing:
                return
            verdict = socket.rate_check()  # every command counts, pongs too
            if verdict == RateGuard.ABUSIVE:
                return
            if command.method == "":
                # Counted against the rate, but an answer is an answer: a client being
                # throttled (111s for its publishes) is alive, not to be closed "no pong".
                socket.pong()
                continue
            try:
                if verdict == RateGuard.LIMITED:
                    raise ReplyError(frames.TOO_MANY_REQUESTS, "slow down", temporary=True)
                await self._run(socket, command)
            except ReplyError as refused:
                if command.id:
                    socket.send(frames.error(command.id, refused))

    async def _run(self, socket: CentrifugoSocket, command: Command) -> None:
        match command.method:
            case "subscribe":
                await self._subscribe(socket, command)
            case "unsubscribe":
                await self._unsubscribe(socket, command)
            case "publish":
                await self._publish(socket, command)
            case "history":
                await self._history(socket, command)
            case "presence" | "presence_stats":
                await self._presence_of(socket, command)
            case "refresh":
                await self._refresh(socket, command)
            case "ping":
                socket.send(frames.reply(command, {}))
            case "connect":
                socket.close_soon(codes.BAD_REQUEST)  # connected already
            case "send":
                pass  # asynchronous messages to the server: nothing here listens for them
            case _:  # rpc, sub_refresh
                raise ReplyError(frames.NOT_AVAILABLE, f"{command.method} is not supported")

    @staticmethod
    def _allowed(decision: Decision) -> Policy:
        if decision.policy is not None and decision.allowed:
            return decision.policy
        raise refused(decision.verdict)

    async def _subscribe(self, socket: CentrifugoSocket, command: Command) -> None:
        request = command.request
        room = frames.channel(request)
        if request.get("type") not in (None, 0) or request.get("tf") is not None:
            raise ReplyError(BAD_REQUEST, "map subscriptions and tag filters are not supported")
        recover = request.get("recover") is True
        since = (
            Since(frames.offset(request.get("offset")), frames.epoch(request.get("epoch")))
            if recover
            else None
        )
        flag = request.get("flag", 0)
        strict = isinstance(flag, int) and bool(flag & REJECT_UNRECOVERED)
        if room in socket.rooms:
            if room not in socket.dropped:
                raise ReplyError(frames.ALREADY_SUBSCRIBED, "already subscribed")
            await self._hub.leave(room, socket)  # back after a gap: subscribe afresh
        actor = actor_of(socket)
        policy = self._allowed(await self._access.to_join(actor, room))
        if len(socket.rooms) >= self._settings.max_rooms:
            raise ReplyError(
                frames.LIMIT_EXCEEDED, f"at most {self._settings.max_rooms} subscriptions"
            )

        async def recheck() -> bool:
            return await self._access.still_allowed(actor, room, policy)

        pending = socket.begin_subscribe(room)
        try:
            try:
                await self._hub.join(
                    room, socket, policy, since=since, announce=pending.announce, recheck=recheck
                )
            except NotAllowed:
                raise refused(Verdict.FORBIDDEN) from None
            except UNAVAILABLE:
                raise unavailable("subscribe") from None
            joined = pending.joined
            assert joined is not None
            recovered = since is not None and joined.recovered is True and not pending.lost
            if since is not None and not recovered and strict and policy.history:
                await self._hub.leave(room, socket)
                raise ReplyError(frames.UNRECOVERABLE_POSITION, "unrecoverable position")
            result: dict[str, Any] = {}
            if policy.history:
                result.update(
                    recoverable=True, positioned=True, epoch=joined.epoch, offset=joined.offset
                )
            if recover:
                result["was_recovering"] = True
            pubs: list[bytes] = []
            if recovered and since is not None and joined.offset is not None:
                # Centrifugo's rule: the reply carries the position recovered from, and the
                # publications that bring the SDK from there to the top.
                result["recovered"] = True
                result["offset"] = min(since.offset, joined.offset)
                pubs = _publications([(m.frame, m.offset) for m in pending.replayed])
            if request.get("join_leave") is True and policy.presence:
                socket.join_leave.add(room)
            socket.send(frames.with_publications(command, result, pubs))
        finally:
            socket.end_subscribe(room)

    async def _unsubscribe(self, socket: CentrifugoSocket, command: Command) -> None:
        room = frames.channel(command.request)
        socket.left(room)
        if room in socket.rooms:
            await self._hub.leave(room, socket)
        socket.send(frames.reply(command, {}))

    async def _publish(self, socket: CentrifugoSocket, command: Command) -> None:
        room = frames.channel(command.request)
        text, key = frames.message(command.request, max_text=self._settings.max_text)
        joined = room in socket.rooms and room not in socket.dropped
        actor = actor_of(socket)
        policy = self._allowed(await self._access.to_send(actor, room, joined=joined))
        if not joined:
            raise ReplyError(frames.PERMISSION_DENIED, "subscribe to the channel to publish")
        try:
            await self._hub.post(room, policy, actor, text, key=key)
        except UNAVAILABLE:
            raise unavailable("publish") from None
        socket.send(frames.reply(command, {}))

    async def _history(self, socket: CentrifugoSocket, command: Command) -> None:
        request = command.request
        room = frames.channel(request)
        policy = self._allowed(await self._access.to_read(actor_of(socket), room))
        if not policy.history:
            raise ReplyError(frames.NOT_AVAILABLE, "this channel keeps no history")
        limit = request.get("limit", 0)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise ReplyError(BAD_REQUEST, "limit must be an integer")
        limit = MAX_HISTORY if limit < 0 else min(limit, MAX_HISTORY)  # -1: all there is
        since = request.get("since")
        if since is not None and not isinstance(since, dict):
            raise ReplyError(BAD_REQUEST, "since must be {offset, epoch}")
        reverse = request.get("reverse") is True
        try:
            epoch, top = await self._hub.position(room, policy)
            if since is not None:
                wanted = frames.epoch(since.get("epoch"))
                if wanted and epoch is not None and wanted != epoch:
                    raise ReplyError(frames.UNRECOVERABLE_POSITION, "unrecoverable position")
            stored = await self._page(room, policy, limit, since, reverse=reverse)
        except UNAVAILABLE:
            raise unavailable("read history") from None
        pubs = _publications([(s.frame, s.offset) for s in stored])
        top = max([top, *(s.offset for s in stored)])
        result = {"epoch": epoch or "", "offset": top}
        socket.send(frames.with_publications(command, result, pubs))

    async def _page(
        self,
        room: str,
        policy: Policy,
        limit: int,
        since: dict[str, Any] | None,
        *,
        reverse: bool,
    ) -> list[Any]:
        """Centrifugo's history order: from the start (or after `since`) oldest first;
        `reverse`: from the end (or before `since`) newest first."""
        if limit == 0:
            return []
        position = None if since is None else frames.offset(since.get("offset"))
        if reverse:
            _, stored = await self._hub.page(room, policy, before=position, limit=limit)
            return stored[::-1]
        _, stored = await self._hub.page(
            room, policy, before=None, after=position or 0, limit=limit
        )
        return stored

    async def _presence_of(self, socket: CentrifugoSocket, command: Command) -> None:
        room = frames.channel(command.request)
        policy = self._allowed(await self._access.to_read(actor_of(socket), room))
        if not policy.presence:
            raise ReplyError(frames.NOT_AVAILABLE, "this channel keeps no presence")
        try:
            count, members = await self._presence_store.query(room)
        except UNAVAILABLE:
            raise unavailable("read presence") from None
        if command.method == "presence_stats":
            # Exact while at most 1000 users are present (those are all listed).
            clients = sum(m.connections for m in members)
            socket.send(frames.reply(command, {"num_clients": clients, "num_users": count}))
            return
        present = {m.id: frames.client_info(m.public()) for m in members}
        socket.send(frames.reply(command, {"presence": present}))

    async def _refresh(self, socket: CentrifugoSocket, command: Command) -> None:
        token = frames.token(command.request)
        if token is None:
            raise ReplyError(BAD_REQUEST, "refresh needs a token")
        try:
            identity = await self._refresher.refresh(socket, token)
        except RefreshRefused as refused:
            if refused.failure is RefreshFailure.UNAVAILABLE:
                raise unavailable("check the token") from None
            if refused.failure is RefreshFailure.WRONG_USER:
                raise ReplyError(frames.PERMISSION_DENIED, "the token is another user's") from None
            socket.close_soon(codes.INVALID_TOKEN)
            return
        socket.send(frames.reply(command, frames.lease(socket.id, identity.exp)))


def _publications(stored: list[tuple[bytes, int | None]]) -> list[bytes]:
    pubs = (frames.publication(frame, offset) for frame, offset in stored)
    return [pub for pub in pubs if pub is not None]

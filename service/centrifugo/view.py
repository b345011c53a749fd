"""`GET /connection/websocket`: a socket that speaks Centrifugo's client protocol.

Before the upgrade, what needs no credential is refused as on `/ws` (not an upgrade, a
subprotocol we do not speak, a full server, an address that keeps failing); this process's
slot is taken. The credential comes after the upgrade, in the first command, `connect`,
which must arrive within `CHAT_CENTRIFUGO_CONNECT_TIMEOUT` (else 3502 stale): its token, or
if it has none the upgrade's own credentials (the session cookie with the Origin check,
a Bearer header), checked by the same handshake as `/ws`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time

from aiohttp import WSMsgType, web

from service.auth.identity import Identity
from service.centrifugo import codes, frames
from service.centrifugo.frames import BadRequest, Command, ReplyError
from service.centrifugo.socket import CentrifugoSocket
from service.errors import Disconnect, Refusal, Refused
from service.node import ChatNode
from service.views import NODE, closed, opened, refusal_response, socket_limits

routes = web.RouteTableDef()

_SERVER_FULL = ReplyError(frames.INTERNAL, "this server is full", temporary=True)

# A refused connect, as Centrifugo says it: an error reply (the SDK retries a temporary
# one, and fetches a new token after 109) or a disconnect.
_CONNECT_REFUSED: dict[Refusal, ReplyError | Disconnect] = {
    Refusal.NO_CREDENTIAL: ReplyError(frames.UNAUTHORIZED, "a token or a session is required"),
    Refusal.INVALID_CREDENTIAL: codes.INVALID_TOKEN,
    Refusal.FORBIDDEN_ORIGIN: ReplyError(
        frames.PERMISSION_DENIED, "this Origin may not use the session cookie"
    ),
    Refusal.DUPLICATE_COOKIE: codes.BAD_REQUEST,
    Refusal.TOO_MANY_FOR_USER: ReplyError(
        frames.LIMIT_EXCEEDED, "too many connections for this user", temporary=True
    ),
    Refusal.ADDRESS_BLOCKED: ReplyError(
        frames.TOO_MANY_REQUESTS, "too many refused credentials", temporary=True
    ),
    Refusal.SERVER_FULL: _SERVER_FULL,
    Refusal.AUTH_UNAVAILABLE: ReplyError(
        frames.INTERNAL, "the auth service is unavailable", temporary=True
    ),
    Refusal.UNAVAILABLE: ReplyError(frames.INTERNAL, "cannot connect now", temporary=True),
}
TOKEN_EXPIRED = ReplyError(frames.TOKEN_EXPIRED, "token expired")


@routes.get("/connection/websocket")
async def centrifugo(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    settings = node.settings
    ws = web.WebSocketResponse(
        max_msg_size=settings.max_frame + 1,
        heartbeat=settings.heartbeat,
        compress=False,
        timeout=settings.close_timeout,
    )
    try:
        if request.headers.get("Sec-WebSocket-Protocol") is not None:
            # Only the JSON encoding, which is offered with no subprotocol at all.
            raise Refused(Refusal.NO_SUBPROTOCOL, "only Centrifugo's JSON encoding is spoken")
        if not ws.can_prepare(request).ok:
            raise Refused(Refusal.NOT_AN_UPGRADE, "a WebSocket upgrade is required")
        node.handshake.authenticator.failures.refuse_if_blocked(request.remote or "unknown")
        node.handshake.admission.refuse_if_full()
        node.handshake.pending.admit()  # released once `connect` is decided (`_serve`)
    except Refused as refused:
        node.metrics.handshake_refused(refused)
        return refusal_response(refused)
    try:
        await ws.prepare(request)
    except BaseException:
        node.handshake.pending.release()
        raise
    await _serve(node, ws, request)
    return ws


async def _serve(node: ChatNode, ws: web.WebSocketResponse, request: web.Request) -> None:
    """The connect phase on a slot of `pending`, then the connected socket on one of the
    server's slots (`admission`), as a `/ws` socket is."""
    settings = node.settings
    try:
        first = await _first_frame(ws, settings.centrifugo_connect_timeout)
        if first is None:
            # Silent, malformed or gone before `connect`: a failed handshake, counted
            # against its address like a refused credential.
            node.handshake.authenticator.failures.failed(request.remote or "unknown")
            return
        connect, rest = first[0], first[1:]
        started = time.monotonic()
        identity = await _identify(node, ws, request, connect)
        if identity is None:
            return
    finally:
        node.handshake.pending.release()
    try:
        node.handshake.admission.admit()
    except Refused:  # filled up while this one was connecting
        node.handshake.release_user(identity)
        await _refuse(ws, connect, _SERVER_FULL, wait=settings.close_timeout)
        return
    try:
        await _connected(node, ws, request, identity, connect, rest, started)
    finally:
        node.handshake.release(identity)


async def _first_frame(ws: web.WebSocketResponse, within: float) -> list[Command] | None:
    """The first frame's commands, the first of them `connect`; None when the socket was
    closed instead (stale, malformed, or gone)."""
    try:
        message = await asyncio.wait_for(ws.receive(), within)
    except TimeoutError:
        await _close(ws, codes.STALE)
        return None
    if message.type != WSMsgType.TEXT:
        if message.type == WSMsgType.BINARY:
            await _close(ws, codes.BAD_REQUEST)
        return None
    try:
        commands = frames.parse(message.data)
    except BadRequest:
        await _close(ws, codes.BAD_REQUEST)
        return None
    if commands[0].method != "connect":
        await _close(ws, codes.BAD_REQUEST)
        return None
    return commands


async def _identify(
    node: ChatNode, ws: web.WebSocketResponse, request: web.Request, connect: Command
) -> Identity | None:
    """The connecting user, with its slot across instances reserved; None when refused
    (and the refusal sent)."""
    try:
        token = frames.token(connect.request)
        identity = await node.handshake.admit_connect(request, token)
    except ReplyError as refused:
        await _refuse(ws, connect, refused, wait=node.settings.close_timeout)
        return None
    except Refused as refused:
        outcome = _CONNECT_REFUSED[refused.refusal]
        if refused.refusal is Refusal.INVALID_CREDENTIAL and _expired(connect.request):
            outcome = TOKEN_EXPIRED  # the SDK fetches a new token and connects again
        if isinstance(outcome, Disconnect):
            await _close(ws, outcome)
        else:
            await _refuse(ws, connect, outcome, wait=node.settings.close_timeout)
        return None
    return identity


async def _connected(
    node: ChatNode,
    ws: web.WebSocketResponse,
    request: web.Request,
    identity: Identity,
    connect: Command,
    rest: list[Command],
    started: float,
) -> None:
    settings = node.settings
    connection = CentrifugoSocket(ws, request, identity, **socket_limits(node))
    opened(node, request, connection, started)
    result = frames.lease(connection.id, identity.exp)
    result.update(ping=settings.centrifugo_ping, pong=True, data={"user": identity.public()})
    connection.send(frames.reply(connect, result))
    connection.start_pings(settings.centrifugo_ping)
    try:
        if rest:
            await node.centrifugo.handle(connection, rest)
        async for message in connection:
            if connection.closing:
                break
            if message.type == WSMsgType.TEXT:
                try:
                    commands = frames.parse(message.data)
                except BadRequest:
                    connection.close_soon(codes.BAD_REQUEST)
                    break
                await node.centrifugo.handle(connection, commands)
            elif message.type == WSMsgType.BINARY:
                connection.close_soon(codes.BAD_REQUEST)
                break
    finally:
        await closed(node, connection)


async def _refuse(
    ws: web.WebSocketResponse, connect: Command, refused: ReplyError, *, wait: float
) -> None:
    """Answers `connect` with an error, then gives the SDK `wait` seconds to close first (so
    that it acts on the error, not on a closed socket)."""
    await ws.send_str(frames.error(connect.id, refused).decode())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ws.receive(), wait)
    await ws.close()


async def _close(ws: web.WebSocketResponse, disconnect: Disconnect) -> None:
    await ws.close(code=disconnect.code, message=disconnect.reason.encode())


def _expired(request: dict[str, object]) -> bool:
    """Whether the connect's token says it has expired (read, not trusted: it was refused
    already; this only chooses between 'fetch a new token' and 'invalid token')."""
    token = request.get("token")
    if not isinstance(token, str) or token.count(".") != 2:
        return False
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return False
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return isinstance(exp, int | float) and exp <= time.time()

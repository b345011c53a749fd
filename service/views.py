"""HTTP and WebSocket handlers of the chat service."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from common.aiohttp_adapter import frame_meter_of
from service.auth.chain import SUBPROTOCOL
from service.auth.identity import Identity
from service.centrifugo.socket import CentrifugoSocket
from service.connection import Connection
from service.errors import REVOKED, Refusal, Refused
from service.native import frames
from service.native.socket import NativeSocket
from service.node import ChatNode
from service.rate_guard import RateGuard

NODE = web.AppKey("chat_node", ChatNode)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)

routes = web.RouteTableDef()


# What each refusal of a handshake is on the wire: status, error code, headers (with a
# Retry-After when the refusal names one). The table is docs/protocol.md's, "Handshake".
_REFUSALS: dict[Refusal, tuple[int, str, dict[str, str]]] = {
    Refusal.NOT_AN_UPGRADE: (400, "invalid_request", {}),
    Refusal.NO_SUBPROTOCOL: (400, "invalid_request", {}),
    Refusal.DUPLICATE_COOKIE: (400, "invalid_request", {}),
    Refusal.NO_CREDENTIAL: (401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="chat"'}),
    Refusal.INVALID_CREDENTIAL: (
        401,
        "invalid_token",
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    ),
    Refusal.FORBIDDEN_ORIGIN: (403, "forbidden_origin", {}),
    Refusal.TOO_MANY_FOR_USER: (429, "too_many_connections", {}),
    Refusal.ADDRESS_BLOCKED: (429, "too_many_requests", {}),
    Refusal.SERVER_FULL: (503, "temporarily_unavailable", {}),
    Refusal.AUTH_UNAVAILABLE: (503, "temporarily_unavailable", {}),
    Refusal.UNAVAILABLE: (503, "temporarily_unavailable", {}),
}


def refusal_response(refused: Refused) -> web.Response:
    status, error, headers = _REFUSALS[refused.refusal]
    if refused.retry_after is not None:
        headers = {**headers, "Retry-After": str(refused.retry_after)}
    return web.json_response(
        {"error": error, "error_description": refused.description}, status=status, headers=headers
    )


@routes.get("/ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    settings = node.settings
    started = time.monotonic()
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL,),
        max_msg_size=settings.max_frame + 1,  # aiohttp refuses sizes >= this; ours is "over"
        heartbeat=settings.heartbeat,
        compress=False,
        timeout=settings.close_timeout,
    )
    # Everything that can refuse happens before the upgrade, as a plain HTTP answer.
    try:
        identity = await node.handshake.admit(request, ws)
    except Refused as refused:
        return refusal_response(refused)
    try:
        await ws.prepare(request)
    except BaseException:
        node.handshake.release(identity)
        raise
    await _serve(node, ws, request, identity, started)
    return ws


async def _serve(
    node: ChatNode,
    ws: web.WebSocketResponse,
    request: web.Request,
    identity: Identity,
    started: float,
) -> None:
    connection = NativeSocket(ws, request, identity, **socket_limits(node))
    opened(node, request, connection, started)
    connection.send(
        frames.encode(
            {
                "type": "hello",
                "user": identity.public(),
                "connection_id": connection.id,
                "expires_at": identity.exp,
            }
        )
    )
    try:
        async for message in connection:
            if connection.closing:
                break
            verdict = connection.rate_check()
            if verdict == RateGuard.ABUSIVE:
                break
            if verdict == RateGuard.LIMITED:
                connection.send(frames.error("rate_limited", "slow down"))
            elif message.type == WSMsgType.TEXT:
                await node.commands.handle(connection, message.data)
            elif message.type == WSMsgType.BINARY:
                connection.send(frames.error("binary_unsupported", "send JSON text frames"))
    finally:
        # The handler may be cancelled (its client hung up): release the slot at once.
        node.handshake.release(identity)
        await closed(node, connection)


def socket_limits(node: ChatNode) -> dict[str, Any]:
    """A new socket's id and bounds (keyword arguments of `Connection`)."""
    settings = node.settings
    return {
        "connection_id": node.next_connection_id(),
        "outbox_limit": settings.outbox_frames,
        "close_timeout": settings.close_timeout,
        "write_timeout": settings.write_timeout,
        "rate_limit": node.rate_limit,
        "metrics": node.metrics,
        "writes": node.writes,
    }


def opened(node: ChatNode, request: web.Request, connection: Connection, started: float) -> None:
    """A socket whose credential was checked from `started` (monotonic) on joins this
    process's sockets, whatever protocol it speaks."""
    settings = node.settings
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None and settings.socket_sndbuf:
        # Left to autotune, the kernel would hide megabytes for a peer that stopped reading
        # before the outbox bound (and 1013) ever applied.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.socket_sndbuf)
    meter = frame_meter_of(request)
    if meter is not None:
        # Pings, pongs and fragments never reach the message loop; they count all the same.
        meter.attach(connection.frame_seen)
    node.sockets.add(connection)
    if node.handshake.revoked_since(connection.identity, started):
        connection.close_soon(REVOKED)
    connection.expire_at(connection.identity.exp + settings.expiry_grace)


async def closed(node: ChatNode, connection: NativeSocket | CentrifugoSocket) -> None:
    """The socket's message loop is over: it leaves its rooms and this process's sockets."""
    if connection.rooms or not connection.settled:
        # Leaving rooms and completing a close take awaits: they run as their own task,
        # so that this handler's cancellation cannot cut them short.
        await asyncio.shield(asyncio.ensure_future(_clean_up(node, connection)))
    else:
        node.sockets.discard(connection)
        connection.release()


async def _clean_up(node: ChatNode, connection: NativeSocket | CentrifugoSocket) -> None:
    node.sockets.discard(connection)
    await node.hub.remove(connection)
    await connection.finish()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    auth_ok = False
    try:
        async with request.app[HTTP_SESSION].get(
            f"{node.settings.auth_url}/healthz", timeout=aiohttp.ClientTimeout(total=1.0)
        ) as response:
            auth_ok = response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        auth_ok = False
    ready = auth_ok and node.broker.healthy
    return web.json_response(
        {
            "status": "ready" if ready else "unavailable",
            "redis": node.broker.healthy,
            "auth": auth_ok,
        },
        status=200 if ready else 503,
    )

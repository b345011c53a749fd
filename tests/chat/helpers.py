"""Driving the chat service as a client would: users, tokens, sockets, frames with deadlines."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CHAT_CLIENT

DEADLINE = 5.0
Client = TestClient[Any, Any]


@dataclass
class ChatUser:
    id: str
    username: str
    access_token: str
    refresh_token: str


@dataclass
class Stack:
    auth: aiohttp.ClientSession
    a: Client
    b: Client
    auth_server: TestServer

    async def user(self, username: str, password: str) -> ChatUser:
        async with self.auth.post("/users", json={"username": username, "password": password}) as r:
            assert r.status == 201, await r.text()
            user = await r.json()
        tokens = await self.token(username, password)
        return ChatUser(user["id"], username, tokens["access_token"], tokens["refresh_token"])

    async def token(self, username: str, password: str) -> dict[str, Any]:
        async with self.auth.post(
            "/token", data={"grant_type": "password", "username": username, "password": password}
        ) as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    async def server_token(self, scope: str = "chat:server") -> str:
        """A service's access token (client_credentials as the registered client)."""
        async with self.auth.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": scope},
            headers={"Authorization": aiohttp.encode_basic_auth(*CHAT_CLIENT)},
        ) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["access_token"])

    async def session_cookie(self, username: str, password: str) -> str:
        async with self.auth.post("/login", json={"username": username, "password": password}) as r:
            assert r.status == 200, await r.text()
            return r.cookies["chat_session"].value


async def connect(
    client: Client, token: str | None = None, **kwargs: Any
) -> aiohttp.ClientWebSocketResponse:
    """Opens /ws with a Bearer header and reads the hello frame."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    ws = await client.ws_connect("/ws", headers=headers, **kwargs)
    hello = await receive(ws)
    assert hello["type"] == "hello", hello
    return ws


async def receive(ws: aiohttp.ClientWebSocketResponse, deadline: float = DEADLINE) -> Any:
    message = await asyncio.wait_for(ws.receive(), deadline)
    if message.type != aiohttp.WSMsgType.TEXT:
        raise AssertionError(f"expected a text frame, got {message.type} {message.data!r}")
    return json.loads(message.data)


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next frame of `kind`, skipping others (e.g. an ack racing the echo)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            frame: dict[str, Any] = await receive(ws)
            if frame["type"] == kind:
                return frame


async def closed_with(
    ws: aiohttp.ClientWebSocketResponse, deadline: float = DEADLINE
) -> int | None:
    """Reads until the server closes (within `deadline` seconds); returns the close code."""
    async with asyncio.timeout(deadline):
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.CLOSE:
                # The code the server sent; ws.close_code is the client's own bookkeeping,
                # which becomes 1006 if its reply finds the socket already gone.
                return int(message.data)
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code


async def join(
    ws: aiohttp.ClientWebSocketResponse, room: str, since: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Joins and returns the `joined` frame (the room's epoch and offset, `recovered`)."""
    frame: dict[str, Any] = {"op": "join", "room": room}
    if since is not None:
        frame["since"] = since
    await ws.send_json(frame)
    joined = await receive_type(ws, "joined")
    assert joined["room"] == room, joined
    return joined


async def send(ws: aiohttp.ClientWebSocketResponse, room: str, text: str, ref: Any = None) -> str:
    """Sends and waits for the ack; returns the message id."""
    frame: dict[str, Any] = {"op": "send", "room": room, "text": text}
    if ref is not None:
        frame["ref"] = ref
    await ws.send_json(frame)
    ack = await receive_type(ws, "ack")
    assert ack["ref"] == ref
    return str(ack["id"])


async def api(
    client: Client, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    """One chat API request; its status and JSON body (None for an empty one)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with client.request(method, path, json=body, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def across_instances(
    stack: Stack, sender: ChatUser, listener: ChatUser, *rooms: str
) -> tuple[aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse]:
    """`sender` on instance A and `listener` on instance B, both joined to `rooms`."""
    sockets = (
        await connect(stack.a, sender.access_token),
        await connect(stack.b, listener.access_token),
    )
    for room in rooms:
        for ws in sockets:
            await join(ws, room)
    return sockets


async def stalled_member(
    client: Client, token: str, room: str
) -> tuple[Any, asyncio.StreamReader, asyncio.StreamWriter]:
    """A member of `room` on `client`'s instance that never reads: its server-side
    connection, and the raw stream (whose reader the test leaves unread). Use it on an
    instance with a small `CHAT_SOCKET_SNDBUF`, so the kernel does not hide the backlog."""
    from service.views import NODE  # the instance's own registry of sockets
    from tests.chat.rawws import open_raw, text_frame

    sockets = client.app[NODE].sockets
    before = set(sockets)
    port = client.server.port
    assert isinstance(port, int)
    reader, writer = await open_raw(client.server.host, port, {"Authorization": f"Bearer {token}"})
    writer.write(text_frame({"op": "join", "room": room}))
    await reader.readuntil(b'"joined"')
    (connection,) = set(sockets) - before
    return connection, reader, writer

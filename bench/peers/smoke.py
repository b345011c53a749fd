"""`python -m bench.peers.smoke`: checks each peer end to end, across two of its processes.

For each peer: a private redis-server, two processes on free ports, one client on each, both in
one room; a message sent through process A must reach the client on process B, and the sender
must get its ack. Prints `peer <name>: ok` per peer and exits non-zero on the first failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from bench.peers import PEERS, Peer
from bench.systems import free_port, redis_server, stop_processes, wait_listening

REPO = Path(__file__).resolve().parents[2]
ROOM = "bench-room"
DEADLINE = 10.0  # seconds for any one wait: start-up, a reply, a delivery


class SmokeFailure(Exception):
    """A peer did not behave as bench/README.md says."""


def require(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailure(what)


def start_peer(argv: list[str], port: int, url: str) -> subprocess.Popen[bytes]:
    """One peer process; its stderr is ours, so a traceback shows in the smoke output."""
    env = {**os.environ, "PORT": str(port), "REDIS_URL": url}
    return subprocess.Popen(argv, cwd=REPO, env=env)


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next frame of type `kind`, skipping others (the sender also gets its own message)."""
    while True:
        frame: dict[str, Any] = await ws.receive_json()
        if frame.get("type") == kind:
            return frame


async def check_websocket(port_a: int, port_b: int) -> None:
    """The JSON-over-WebSocket protocol of `reference` and `channels`."""
    async with aiohttp.ClientSession() as session:
        a = await session.ws_connect(f"http://127.0.0.1:{port_a}/ws")
        b = await session.ws_connect(f"http://127.0.0.1:{port_b}/ws")
        for ws in (a, b):
            require(await ws.receive_json() == {"type": "hello"}, "no hello on connect")
            await ws.send_json({"op": "join", "room": ROOM})
            joined = await ws.receive_json()
            require(joined == {"type": "joined", "room": ROOM}, f"join answered {joined}")
        await a.send_json({"op": "send", "room": ROOM, "text": "hi", "ref": 7})
        ack = await receive_type(a, "ack")
        require(ack.get("ref") == 7 and isinstance(ack.get("id"), str), f"bad ack {ack}")
        message = await receive_type(b, "message")
        expected = {"type": "message", "room": ROOM, "id": ack["id"], "text": "hi"}
        require(
            {k: message.get(k) for k in expected} == expected
            and isinstance(message.get("ts"), float),
            f"B received {message}, expected {expected} and a float ts",
        )
        await b.send_json({"op": "ping"})
        require(await b.receive_json() == {"type": "pong"}, "no pong")
        await a.close()
        await b.close()


async def check_socketio(port_a: int, port_b: int) -> None:
    """The Socket.IO events of `socketio_server` and `node_socketio/server.mjs`."""
    loop = asyncio.get_running_loop()
    a, b = socketio.AsyncClient(), socketio.AsyncClient()
    hellos = [loop.create_future() for _ in range(2)]
    delivered: asyncio.Future[dict[str, Any]] = loop.create_future()

    def resolve(done: asyncio.Future[Any]) -> Callable[[Any], None]:
        return lambda data: None if done.done() else done.set_result(data)

    a.on("hello", resolve(hellos[0]))
    b.on("hello", resolve(hellos[1]))
    b.on("message", resolve(delivered))
    try:
        await a.connect(f"http://127.0.0.1:{port_a}", transports=["websocket"])
        await b.connect(f"http://127.0.0.1:{port_b}", transports=["websocket"])
        for hello in hellos:
            require(await hello == {}, "no hello on connect")
        for client in (a, b):
            joined = await client.call("join", {"room": ROOM}, timeout=DEADLINE)
            require(joined == {"joined": ROOM}, f"join answered {joined}")
        ack = await a.call("send", {"room": ROOM, "text": "hi", "ref": 7}, timeout=DEADLINE)
        require(isinstance(ack, dict) and isinstance(ack.get("id"), str), f"bad ack {ack}")
        message = await delivered
        expected = {"room": ROOM, "id": ack["id"], "text": "hi"}
        require(
            {k: message.get(k) for k in expected} == expected
            and isinstance(message.get("ts"), float),
            f"B received {message}, expected {expected} and a float ts",
        )
    finally:
        await a.disconnect()
        await b.disconnect()


CHECKS: dict[str, Callable[[int, int], Awaitable[None]]] = {
    "json": check_websocket,
    "socketio": check_socketio,
}


async def check_peer(peer: Peer, url: str) -> None:
    ports = (free_port(), free_port())
    processes: list[subprocess.Popen[bytes]] = []
    try:
        argv = peer.argv()  # node-socketio: RuntimeError when node or its packages are missing
        for port in ports:
            processes.append(start_peer(argv, port, url))
        for process, port in zip(processes, ports, strict=True):
            await wait_listening(port, process, deadline=DEADLINE)
        async with asyncio.timeout(DEADLINE):
            await CHECKS[peer.protocol](*ports)
    finally:
        stop_processes(processes, timeout=5)


async def main() -> int:
    if shutil.which("redis-server") is None:
        print("redis-server is not on PATH (apt-get install redis-server)")
        return 1
    directory = tempfile.mkdtemp(prefix="bench-smoke-redis-")
    try:
        with redis_server(Path(directory), core=None) as url:  # unpinned: any machine will do
            for name, peer in PEERS.items():
                try:
                    await check_peer(peer, url)
                except (
                    SmokeFailure,
                    RuntimeError,  # a peer could not start, exited or never listened
                    TimeoutError,
                    OSError,
                    aiohttp.ClientError,
                    socketio.exceptions.SocketIOError,
                ) as error:
                    print(f"peer {name}: FAILED: {type(error).__name__}: {error}")
                    return 1
                print(f"peer {name}: ok")
        return 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

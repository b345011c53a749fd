"""`python -m bench.peers.smoke`: checks each peer end to end, across two of its processes.

For each peer: a private redis-server, two processes on free ports, one client on each, both in
one room; a message sent through process A must reach the client on process B, and the sender
must get its ack. Prints `peer <name>: ok` per peer and exits non-zero on the first failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import socketio

REPO = Path(__file__).resolve().parents[2]
ROOM = "bench-room"
DEADLINE = 10.0  # seconds for any one wait: start-up, a reply, a delivery


class SmokeFailure(Exception):
    """A peer did not behave as bench/README.md says."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailure(what)


async def start_redis(directory: str) -> tuple[Process, str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SmokeFailure("redis-server is not on PATH (apt-get install redis-server)")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + DEADLINE
    try:
        while True:
            try:
                await client.ping()
                return process, url
            except aioredis.ConnectionError:
                if time.monotonic() > deadline or process.returncode is not None:
                    await stop(process)
                    raise SmokeFailure(f"redis-server did not start on {port}") from None
                await asyncio.sleep(0.02)  # polling a process we just spawned
    finally:
        await client.aclose()


async def start_peer(module: str, port: int, url: str) -> Process:
    """One peer process; its stderr is ours, so a traceback shows in the smoke output."""
    env = {**os.environ, "PORT": str(port), "REDIS_URL": url}
    return await asyncio.create_subprocess_exec(sys.executable, "-m", module, cwd=REPO, env=env)


async def wait_listening(process: Process, port: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if process.returncode is not None:
                raise SmokeFailure(f"exited with {process.returncode} before listening") from None
            if time.monotonic() > deadline:
                raise SmokeFailure(f"not listening on {port} after {DEADLINE}s") from None
            await asyncio.sleep(0.05)  # polling a process we just spawned
        else:
            writer.close()
            await writer.wait_closed()
            return


async def stop(process: Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=5)
        except TimeoutError:
            process.kill()
            await process.wait()


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
    """The Socket.IO events of `socketio_server`."""
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


PEERS: dict[str, tuple[str, Callable[[int, int], Awaitable[None]]]] = {
    "reference": ("bench.peers.reference", check_websocket),
    "socketio": ("bench.peers.socketio_server", check_socketio),
    "channels": ("bench.peers.channels_app.serve", check_websocket),
}


async def check_peer(module: str, check: Callable[[int, int], Awaitable[None]], url: str) -> None:
    ports = (free_port(), free_port())
    processes = [await start_peer(module, port, url) for port in ports]
    try:
        for process, port in zip(processes, ports, strict=True):
            await wait_listening(process, port)
        async with asyncio.timeout(DEADLINE):
            await check(*ports)
    finally:
        for process in processes:
            await stop(process)


async def main() -> int:
    directory = tempfile.mkdtemp(prefix="bench-smoke-redis-")
    redis_process, url = await start_redis(directory)
    try:
        for name, (module, check) in PEERS.items():
            try:
                await check_peer(module, check, url)
            except (
                SmokeFailure,
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
        await stop(redis_process)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

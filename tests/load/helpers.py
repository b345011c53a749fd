"""Many clients at once: users and tokens in bulk, sockets with a reader each, figures."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from tests.conftest import PASSWORD
from tests.processes import ServiceProcess

FRAME_DEADLINE = 30.0  # generous: 2,000 sockets share two cores with the server
HANDSHAKE_DEADLINE = 30.0


def client_session() -> aiohttp.ClientSession:
    # limit=0: a WebSocket holds its connector slot for its whole life, and the default
    # limit (100) would quietly serialise the clients behind the first hundred.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def issue_tokens(
    session: aiohttp.ClientSession, auth_url: str, prefix: str, count: int, concurrency: int = 8
) -> list[str]:
    """Registers `count` users and returns one access token for each."""
    slots = asyncio.Semaphore(concurrency)

    async def one(n: int) -> str:
        username = f"{prefix}{n:05d}"
        async with slots:
            async with session.post(
                f"{auth_url}/users", json={"username": username, "password": PASSWORD}
            ) as response:
                assert response.status == 201, await response.text()
            async with session.post(
                f"{auth_url}/token",
                data={"grant_type": "password", "username": username, "password": PASSWORD},
            ) as response:
                assert response.status == 200, await response.text()
                return str((await response.json())["access_token"])

    return list(await asyncio.gather(*(one(n) for n in range(count))))


class LoadClient:
    """One socket with a task that reads it all the time (so the server's pings are
    answered) and queues the decoded frames; None in the queue means the socket closed."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.frames.put_nowait(json.loads(message.data))
        finally:
            self.frames.put_nowait(None)

    async def expect(self, kind: str, deadline: float = FRAME_DEADLINE) -> dict[str, Any]:
        """The next frame of type `kind`, skipping others."""
        async with asyncio.timeout(deadline):
            while True:
                frame = await self.frames.get()
                if frame is None:
                    raise AssertionError(f"closed ({self.ws.close_code}) while waiting for {kind}")
                if frame["type"] == kind:
                    return frame

    async def join(self, room: str) -> None:
        await self.ws.send_json({"op": "join", "room": room})
        assert await self.expect("joined") == {"type": "joined", "room": room}

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def open_client(
    session: aiohttp.ClientSession, url: str, token: str
) -> tuple[LoadClient, float]:
    """Opens `/ws` with a Bearer token; returns the client and seconds until its hello."""
    started = time.perf_counter()
    async with asyncio.timeout(HANDSHAKE_DEADLINE):
        ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        client = LoadClient(ws)
        try:
            await client.expect("hello")
        except BaseException:
            await client.close()
            raise
    return client, time.perf_counter() - started


async def connect_many(
    session: aiohttp.ClientSession,
    url: str,
    tokens: Sequence[str],
    *,
    concurrency: int,
    room: str | None = None,
) -> tuple[list[LoadClient], list[float]]:
    """Opens one socket per token, `concurrency` handshakes at a time, optionally joining
    `room`; returns the clients and each handshake's latency (queueing excluded). If any
    fails, the ones that opened are closed and the first error is raised."""
    slots = asyncio.Semaphore(concurrency)

    async def one(token: str) -> tuple[LoadClient, float]:
        async with slots:
            client, latency = await open_client(session, url, token)
        if room is not None:
            try:
                await client.join(room)
            except BaseException:
                await client.close()
                raise
        return client, latency

    results = await asyncio.gather(*(one(t) for t in tokens), return_exceptions=True)
    opened = [r for r in results if isinstance(r, tuple)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await close_all([client for client, _ in opened])
        summary = sorted({type(f).__name__ + ": " + str(f)[:120] for f in failures})
        raise AssertionError(f"{len(failures)} of {len(tokens)} clients failed: {summary}")
    return [client for client, _ in opened], [latency for _, latency in opened]


async def close_all(clients: Sequence[LoadClient], concurrency: int = 200) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one(client: LoadClient) -> None:
        async with slots:
            await client.close()

    await asyncio.gather(*(one(c) for c in clients), return_exceptions=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


async def wait_until(condition: Callable[[], bool], deadline: float, interval: float = 0.1) -> bool:
    """Polls a condition on another process (no event reaches us from it) until true."""
    give_up = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > give_up:
            return False
        await asyncio.sleep(interval)
    return True


class AuthCallCounter:
    """Counts the `/introspect` requests the auth service logged, phase by phase.

    Each phase ends with a request for a marker path (a 404 the access log still records);
    once the marker is in the log, so is every introspection answered before it.
    """

    def __init__(self, auth: ServiceProcess, session: aiohttp.ClientSession) -> None:
        self._auth = auth
        self._session = session
        self._counted = 0
        self._phases = 0

    async def phase_calls(self) -> int:
        """`/introspect` requests since the previous call (or since start-up)."""
        self._phases += 1
        marker = f"/load-phase-marker-{self._phases}"
        async with self._session.get(f"{self._auth.url}{marker}") as response:
            await response.read()

        def introspections_before_marker() -> int | None:
            count = 0
            for record in self._auth.log_records():
                path = record.get("path")
                if path == marker:
                    return count
                if path == "/introspect" and record.get("method") == "POST":
                    count += 1
            return None

        totals: list[int] = []

        def logged() -> bool:
            total = introspections_before_marker()
            if total is not None:
                totals.append(total)
            return total is not None

        assert await wait_until(logged, 10.0), f"marker {marker} never reached the auth log"
        calls = totals[-1] - self._counted
        self._counted = totals[-1]
        return calls


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all
    sockets on the machine): each costs its client a SYN retransmit, a second or more."""
    with open("/proc/net/netstat") as netstat:
        header, values = [line.split() for line in netstat.readlines()[:2]]
    return int(dict(zip(header, values, strict=True)).get("ListenOverflows", 0))

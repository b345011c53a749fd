"""The recovery storm of `make bench` (ours only: no other system keeps history).

Every subscriber of one room is on instance A; a publisher posts to the room at a fixed rate
through instance B's HTTP API (so B holds no socket in the room and nothing of it in
memory). A is killed with SIGKILL; every subscriber reconnects at once to B (its token is
new to B, as it would be after a real failover) and joins with `since` = the last offset it
received, while the publishing goes on. Measured, from the kill:

- per subscriber, the time until it is recovered: its `joined` came back with
  `recovered:true` and the replay brought it up to the `offset` that `joined` named (p50, p99);
  and the time until its new socket had its hello (the handshake's share of it);
- the history reads the storm cost: B is the only instance left and the room the only room,
  so every `XREVRANGE` Redis ran meanwhile (`INFO commandstats` counts it inside the read's
  script: `RoomHistory.tail`) is a history read of this room by B; `Room.read` makes the
  storm's joins share one read and serves later joins from it for `WINDOW_SECONDS`;
- whether every subscriber received every message from its first join to the last one
  published exactly once, in offset order (lost, duplicated, out of order, gap frames).

The subscribers are Python clients (the compiled load generator does not reconnect or speak
`since`): when the load generator's core was full and the servers' was not, the row is
flagged as elsewhere. A is dead afterwards, so this scenario runs last.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.auth_bench import mint_tokens
from bench.scenarios import Meter
from bench.systems import CLIENT_ID, CLIENT_SECRET, Running

ROOM = "recovery-room"
RATE = 20.0  # messages per second from the publisher, before, during and after the storm
BEFORE_KILL_S = 1.0  # publishing with everyone on A before the kill
AFTER_RECOVERY_S = 1.0  # publishing after the last subscriber recovered
RECOVERY_DEADLINE_S = 60.0
DRAIN_DEADLINE_S = 15.0  # after the last send, for every subscriber to have it
OPEN_AT_ONCE = 50  # concurrent handshakes while the subscribers are set up


async def distinct_tokens(
    system: Running, session: aiohttp.ClientSession, prefix: str, count: int
) -> list[str]:
    """One access token for each of `count` distinct users (`prefix`0, `prefix`1, ...), so
    presence counts `count` users; each token is new to the chat service."""
    return await mint_tokens(system, session, count, users=count, prefix=prefix)


def ws_url(system: Running, instance: int) -> str:
    return system.urls[instance].replace("http", "ws", 1)


async def wait_for(wake: asyncio.Event, done: Callable[[], bool], deadline: float) -> bool:
    """Until `done()` (checked each time `wake` is set) or `deadline` seconds pass."""
    until = time.monotonic() + deadline
    while not done():
        remaining = until - time.monotonic()
        if remaining <= 0:
            return False
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), remaining)
    return True


@dataclass
class Subscriber:
    """One subscriber's view of the room: where it is, and what went wrong."""

    token: str
    wake: asyncio.Event  # set whenever it moves on (shared by all: the scenario waits on it)
    epoch: str = ""
    first: int = 0  # the room's offset at its first join: it must receive everything after
    last: int = 0  # the last offset received in order
    duplicates: int = 0
    skipped: int = 0  # offsets that never came before a later one did
    gaps: int = 0
    not_recovered: int = 0
    closed_ns: int | None = None  # after the kill: when it saw its socket on A close
    hello_ns: int | None = None  # after the kill: the new socket's hello
    recovered_ns: int | None = None

    def receive(self, frame: dict[str, Any]) -> None:
        offset = int(frame["offset"])
        if offset <= self.last:
            self.duplicates += 1
        else:
            self.skipped += offset - self.last - 1
            self.last = offset
            self.wake.set()


async def _open(session: aiohttp.ClientSession, url: str, token: str) -> Any:
    ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
    hello = json.loads(await ws.receive_str())
    if hello.get("type") != "hello":
        raise RuntimeError(f"expected hello, got {hello}")
    return ws


async def _follow(sub: Subscriber, ws: Any, *, resuming: bool) -> None:
    """Reads until the socket closes. `resuming` (after a join with since): marks the
    subscriber recovered once `joined` came and it has every offset up to the one named."""
    target: int | None = None
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        frame = json.loads(message.data)
        kind = frame.get("type")
        if kind == "message":
            sub.receive(frame)
        elif kind == "joined" and resuming:
            target = int(frame["offset"])
            if frame.get("recovered") is not True:
                sub.not_recovered += 1
        elif kind == "gap":
            sub.gaps += 1
        if target is not None and sub.recovered_ns is None and sub.last >= target:
            sub.recovered_ns = time.monotonic_ns()
            sub.wake.set()


async def _subscriber(
    sub: Subscriber, session: aiohttp.ClientSession, system: Running, ws: Any
) -> None:
    """On A until A dies, then on B with `since`, until the scenario cancels it."""
    await _follow(sub, ws, resuming=False)
    sub.closed_ns = time.monotonic_ns()
    ws = await _open(session, ws_url(system, 1), sub.token)
    sub.hello_ns = time.monotonic_ns()
    try:
        since = {"offset": sub.last, "epoch": sub.epoch}
        await ws.send_str(json.dumps({"op": "join", "room": ROOM, "since": since}))
        await _follow(sub, ws, resuming=True)
    finally:
        await ws.close()


async def _publish(
    session: aiohttp.ClientSession, system: Running, token: str, stop: asyncio.Event
) -> tuple[int, int]:
    """Posts to the room through B's HTTP API at RATE until `stop`; returns (messages
    published, the last one's offset). Through the API, so that B holds no socket in the
    room before the storm: its first `since` join subscribes and reads the history, the
    storm's other joins wait on that read or are served from it."""
    url = system.urls[1].removesuffix("/ws") + f"/api/rooms/{ROOM}/messages"
    headers = {"Authorization": f"Bearer {token}"}
    published, last, seq = 0, 0, 0
    started = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(max(0.0, started + seq / RATE - time.monotonic()))
        text = f"{seq} {time.monotonic_ns()}"
        async with session.post(url, json={"text": text}, headers=headers) as response:
            if response.status != 201:
                raise RuntimeError(f"publishing answered {response.status}")
            body = await response.json()
        published, last, seq = published + 1, max(last, int(body["offset"])), seq + 1
    return published, last


async def _xrevranges(client: aioredis.Redis) -> int:
    stats: dict[str, dict[str, int]] = await client.info("commandstats")
    return int(stats.get("cmdstat_xrevrange", {}).get("calls", 0))


async def _recoveries_counted(session: aiohttp.ClientSession, system: Running) -> int:
    """`chat_recoveries_total{recovered="true"}` on B (its /metrics, as its client)."""
    url = system.urls[1].removesuffix("/ws") + "/metrics"
    credentials = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    async with session.get(url, headers={"Authorization": f"Basic {credentials}"}) as response:
        if response.status != 200:
            raise RuntimeError(f"B's /metrics answered {response.status}")
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('chat_recoveries_total{recovered="true"}'):
            return int(float(line.split()[-1]))
    return 0


def _ms(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 1)


async def recovery_storm(
    system: Running, session: aiohttp.ClientSession, redis_url: str, count: int
) -> dict[str, Any]:
    """`count` subscribers of A recover on B after A's SIGKILL (see the module docstring)."""
    tokens = await distinct_tokens(system, session, "storm", count + 1)
    wake = asyncio.Event()
    subs = [Subscriber(token, wake) for token in tokens[:count]]
    slots = asyncio.Semaphore(OPEN_AT_ONCE)

    async def join_on_a(sub: Subscriber) -> Any:
        async with slots:
            ws = await _open(session, ws_url(system, 0), sub.token)
            await ws.send_str(json.dumps({"op": "join", "room": ROOM}))
            joined: dict[str, Any] = {}
            while joined.get("type") != "joined":  # others' member_joined may come first
                joined = json.loads(await ws.receive_str())
            sub.epoch, sub.first = joined["epoch"], int(joined["offset"])
            sub.last = sub.first
            return ws

    sockets = await asyncio.gather(*(join_on_a(sub) for sub in subs))
    tasks = [
        asyncio.create_task(_subscriber(sub, session, system, ws))
        for sub, ws in zip(subs, sockets, strict=True)
    ]
    for task in tasks:
        task.add_done_callback(lambda _: wake.set())  # a failed subscriber ends the waits
    pairs = list(zip(subs, tasks, strict=True))
    redis = aioredis.Redis.from_url(redis_url)
    stop = asyncio.Event()
    sending = asyncio.create_task(_publish(session, system, tokens[count], stop))
    sending.add_done_callback(lambda _: wake.set())  # a failed publisher ends the waits
    try:
        await asyncio.sleep(BEFORE_KILL_S)  # publishing with everyone on A
        reads_before = await _xrevranges(redis)
        recoveries_before = await _recoveries_counted(session, system)
        meter = Meter([system.pid(1), *(p.pid for p in system.helpers)])
        killed_ns = time.monotonic_ns()
        os.kill(system.pid(0), signal.SIGKILL)
        await wait_for(
            wake,
            lambda: sending.done() or all(s.recovered_ns or t.done() for s, t in pairs),
            RECOVERY_DEADLINE_S,
        )  # a failed publisher's exception is raised below
        storm = meter.figures()
        await asyncio.sleep(AFTER_RECOVERY_S)
        stop.set()
        sent, final = await sending
        await wait_for(
            wake, lambda: all(s.last >= final or t.done() for s, t in pairs), DRAIN_DEADLINE_S
        )
        reads = await _xrevranges(redis) - reads_before
        recoveries = await _recoveries_counted(session, system) - recoveries_before
        ended = [t for t in tasks if t.done() and not t.cancelled()]  # before the end
        errors = [t.exception() for t in ended if t.exception() is not None]
    finally:
        stop.set()
        for task in [*tasks, sending]:
            task.cancel()
        await asyncio.gather(*tasks, sending, return_exceptions=True)
        await redis.aclose()
    recovered = [s.recovered_ns - killed_ns for s in subs if s.recovered_ns is not None]
    hellos = [s.hello_ns - killed_ns for s in subs if s.hello_ns is not None]
    closes = [s.closed_ns - killed_ns for s in subs if s.closed_ns is not None]
    return {
        "subscribers": count,
        "messages": sent,
        "recovered": len(recovered),
        "recovered_p50_ms": _ms(recovered, 0.50),
        "recovered_p99_ms": _ms(recovered, 0.99),
        "recovered_max_ms": _ms(recovered, 1.0),
        "closed_p50_ms": _ms(closes, 0.50),
        "closed_p99_ms": _ms(closes, 0.99),
        "hello_p50_ms": _ms(hellos, 0.50),
        "hello_p99_ms": _ms(hellos, 0.99),
        "history_reads": reads,
        "recoveries_counted_by_b": recoveries,
        "subscribers_ended_early": len(ended),
        "first_failure": repr(errors[0]) if errors else None,
        "not_recovered": sum(s.not_recovered for s in subs),
        "lost": sum(s.skipped + max(0, final - s.last) for s in subs),
        "duplicated": sum(s.duplicates for s in subs),
        "gaps": sum(s.gaps for s in subs),
        **storm,
    }


def recovery_targets(ours: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The target lines of `make bench` (none when the run left the scenario out)."""
    if "recovery" not in ours:
        return []
    storm = ours["recovery"]
    p99 = storm["recovered_p99_ms"]
    everyone = storm["recovered"] == storm["subscribers"]
    reads, lost, dup = storm["history_reads"], storm["lost"], storm["duplicated"]
    return [
        ("recovery storm: every subscriber recovered, p99 <= 2 s from the kill",
         everyone and p99 is not None and p99 <= 2000,
         f"{storm['recovered']}/{storm['subscribers']}, p99 {p99} ms"),
        ("recovery storm: one history read per room per instance",
         reads <= 1, f"{reads} reads (1 room, 1 instance left)"),
        ("recovery storm: 0 lost, each once, in offset order",
         lost == dup == storm["gaps"] == storm["not_recovered"] == 0,
         f"lost {lost}, duplicated {dup}, gaps {storm['gaps']}, "
         f"recovered:false {storm['not_recovered']}"),
    ]  # fmt: skip

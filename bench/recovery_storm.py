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

The subscribers are the compiled load generator's (`wsload storm`, bench/loadgen/storm.py):
one epoll loop that reconnects each subscriber the moment its socket on A closes, with a
nonblocking connect, and counts what it receives. Its CPU over the storm (from just before
the kill until everyone recovered) is in `loadgen_cpu`, so the row is still flagged when the
load generator's core was full and the servers' was not. A is dead afterwards, so this
scenario runs last.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.auth_bench import mint_tokens
from bench.loadgen.storm import Storm
from bench.scenarios import Meter
from bench.systems import CLIENT_ID, CLIENT_SECRET, Running

ROOM = "recovery-room"
FROM_WSLOAD = (
    "recovered", "recovered_p50_ms", "recovered_p99_ms", "recovered_max_ms", "closed_p50_ms",
    "closed_p99_ms", "hello_p50_ms", "hello_p99_ms", "not_recovered", "lost", "duplicated",
    "gaps",
)  # fmt: skip
RATE = 20.0  # messages per second from the publisher, before, during and after the storm
BEFORE_KILL_S = 1.0  # publishing with everyone on A before the kill
AFTER_RECOVERY_S = 1.0  # publishing after the last subscriber recovered
RECOVERY_DEADLINE_S = 60.0
DRAIN_DEADLINE_S = 15.0  # after the last send, for every subscriber to have it


async def distinct_tokens(
    system: Running, session: aiohttp.ClientSession, prefix: str, count: int
) -> list[str]:
    """One access token for each of `count` distinct users (`prefix`0, `prefix`1, ...), so
    presence counts `count` users; each token is new to the chat service."""
    return await mint_tokens(system, session, count, users=count, prefix=prefix)


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


async def recovery_storm(
    system: Running, session: aiohttp.ClientSession, redis_url: str, count: int
) -> dict[str, Any]:
    """`count` subscribers of A recover on B after A's SIGKILL (see the module docstring)."""
    tokens = await distinct_tokens(system, session, "storm", count + 1)
    headers = [{"Authorization": f"Bearer {token}"} for token in tokens[:count]]
    redis = aioredis.Redis.from_url(redis_url)
    stop = asyncio.Event()
    sending: asyncio.Task[tuple[int, int]] | None = None
    try:
        async with Storm(system.urls, ROOM, headers) as storm:  # everyone has joined on A
            sending = asyncio.create_task(_publish(session, system, tokens[count], stop))
            await asyncio.sleep(BEFORE_KILL_S)  # publishing with everyone on A
            reads_before = await _xrevranges(redis)
            recoveries_before = await _recoveries_counted(session, system)
            meter = Meter([system.pid(1), *(p.pid for p in system.helpers)])
            await storm.start()
            killed_ns = time.monotonic_ns()
            os.kill(system.pid(0), signal.SIGKILL)
            recovering = asyncio.create_task(storm.killed(killed_ns, RECOVERY_DEADLINE_S))
            await asyncio.wait({recovering, sending}, return_when=asyncio.FIRST_COMPLETED)
            if not recovering.done():  # the publisher failed: its exception ends the scenario
                recovering.cancel()
                await sending
                raise RuntimeError("the publisher stopped during the storm")
            figures = meter.figures(await recovering)
            await asyncio.sleep(AFTER_RECOVERY_S)
            stop.set()
            sent, final = await sending
            result = await storm.finish(final, DRAIN_DEADLINE_S)
        reads = await _xrevranges(redis) - reads_before
        recoveries = await _recoveries_counted(session, system) - recoveries_before
    finally:
        stop.set()
        if sending is not None:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        await redis.aclose()
    return {
        "subscribers": count,
        "messages": sent,
        **{key: result[key] for key in FROM_WSLOAD},
        "history_reads": reads,
        "recoveries_counted_by_b": recoveries,
        "subscribers_ended_early": result["ended_early"],
        "first_failure": result["first_failure"],
        "unparsed_frames": result["unparsed_frames"],
        **figures,
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

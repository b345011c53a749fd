"""Scenarios `revoke` (finding 2) and `handshakes` (finding 8): floods of cheap requests.

`revoke`: made-up bearer handshakes fill a chat instance's introspection cache (each one a
`/introspect` call if the chat asks the auth service about it), then one valid access token
is revoked over and over while a probe times the chat instance's `/healthz`; the revocation
events published on `auth:revocations` are counted by a subscriber of our own.

`handshakes`: made-up bearer handshakes at a fixed concurrency for a fixed time, while a
legitimate client on another source address (`VICTIM`) opens real sockets every 100 ms.

The victims' probes come from another address than the attack, as a real victim's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.attack_measure import VICTIM, CpuMeter, log_mark, requests_between
from bench.attack_probe import Probe, summarize
from bench.attack_report import Figures
from bench.attack_stack import StackError, describe, start_stack, users_with_tokens
from bench.attack_ws import handshake_status, random_bearer

CHANNEL = "auth:revocations"
MARK_CHANNEL = "bench:attack:mark"  # nobody else listens; its message closes the count
CONCURRENCY = 50
REVOKE_CONCURRENCY = 20
TAIL = 5.0  # seconds the probe goes on after the revoke loop
BASELINE = 3.0  # seconds of legitimate handshakes before the attack


async def handshake_flood(
    port: int, *, total: int | None = None, until: float | None = None
) -> tuple[Counter[str], float]:
    """Handshakes with made-up bearer values, `CONCURRENCY` at a time, until `total` are done
    or the monotonic time `until`: their statuses, and the seconds it took."""
    statuses: Counter[str] = Counter()
    started = time.monotonic()
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while (total is None or issued < total) and (until is None or time.monotonic() < until):
            issued += 1
            statuses[await handshake_status(port, random_bearer())] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses, time.monotonic() - started


async def revoke_loop(auth_url: str, token: str, calls: int) -> Counter[str]:
    """`calls` revocations of `token`, `REVOKE_CONCURRENCY` at a time: their statuses."""
    statuses: Counter[str] = Counter()
    remaining = calls
    connector = aiohttp.TCPConnector(limit=REVOKE_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                try:
                    async with session.post(f"{auth_url}/revoke", data={"token": token}) as r:
                        await r.read()
                        statuses[str(r.status)] += 1
                except TimeoutError:
                    statuses["timeout"] += 1
                except (aiohttp.ClientError, OSError) as error:
                    statuses[type(error).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(REVOKE_CONCURRENCY)))
    return statuses


class EventCounter:
    """Counts the messages on `auth:revocations`; a message of our own on another channel
    of the same subscription marks the point up to which every earlier one has arrived."""

    def __init__(self, url: str) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._pubsub = self._redis.pubsub()
        self._listener: asyncio.Task[None] | None = None
        self.events = 0
        self._marked = asyncio.Event()

    async def start(self) -> None:
        await self._pubsub.subscribe(CHANNEL, MARK_CHANNEL)
        confirmed = 0
        async with asyncio.timeout(10):
            while confirmed < 2:
                message = await self._pubsub.get_message(timeout=1.0)
                confirmed += message is not None and message["type"] == "subscribe"
        self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] != "message":
                continue
            if message["channel"] == CHANNEL.encode():
                self.events += 1
            else:
                self._marked.set()

    async def settled(self) -> int:
        """The count once every event published before this call has been received."""
        self._marked.clear()
        await self._redis.publish(MARK_CHANNEL, "mark")
        await asyncio.wait_for(self._marked.wait(), 10)
        return self.events

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()


async def revoke(source: Path, logs: Path, size: dict[str, Any], out: Figures) -> None:
    stack = await start_stack(source, logs, "revoke", chats=1)
    events = EventCounter(stack.redis_url)
    probe: Probe | None = None
    try:
        token = (await users_with_tokens(stack.auth_url, ["revoker"]))["revoker"]
        await events.start()
        first = await log_mark(stack)
        statuses, seconds = await handshake_flood(stack.chat_ports[0], total=size["fill"])
        last = await log_mark(stack)
        out.put("fill.handshakes", size["fill"])
        out.put("fill.statuses", dict(sorted(statuses.items())))
        out.put("fill.per_second", round(size["fill"] / seconds))
        out.put("fill.introspections", requests_between(stack.auth_log, "/introspect", first, last))
        probe = await Probe.start(
            {"mode": "healthz", "url": f"{stack.chat_url()}/healthz", "interval": 0.05,
             "timeout": 2.0, "local_addr": VICTIM},
            logs / "revoke.probe.log",
        )  # fmt: skip
        await asyncio.sleep(1.0)  # a second of probes before the loop, for comparison
        before = await events.settled()
        cpu = CpuMeter({"chat": stack.chats[0], "auth": stack.auth})
        loop_started = time.monotonic()
        statuses = await revoke_loop(stack.auth_url, token, size["revokes"])
        loop_ended = time.monotonic()
        out.put("loop.cpu", cpu.read())
        tail_cpu = CpuMeter({"chat": stack.chats[0]})
        out.put("loop.calls", size["revokes"])
        out.put("loop.statuses", dict(sorted(statuses.items())))
        out.put("loop.seconds", round(loop_ended - loop_started, 2))
        await asyncio.sleep(TAIL)  # the chat may still be working through the events
        out.put("loop.cpu_5s_after", tail_cpu.read())
        out.put("loop.events_published", await events.settled() - before)
        samples, _ = await probe.stop()
        probe = None
        out.put("healthz.before_loop", summarize(samples, None, loop_started))
        out.put("healthz.during_loop", summarize(samples, loop_started, loop_ended))
        out.put("healthz.loop_and_5s_after", summarize(samples, loop_started, None))
        out.put("process", describe(stack.chats[0]))
    finally:
        if probe is not None:
            with contextlib.suppress(Exception):
                await probe.stop()
        await events.aclose()
        stack.stop()


async def handshakes(source: Path, logs: Path, size: dict[str, Any], out: Figures) -> None:
    stack = await start_stack(source, logs, "handshakes", chats=1)
    probe: Probe | None = None
    try:
        token = (await users_with_tokens(stack.auth_url, ["legit"]))["legit"]
        probe = await Probe.start(
            {"mode": "handshake", "url": stack.ws_url(), "token": token,
             "local_addr": VICTIM, "interval": 0.1, "timeout": 10.0},
            logs / "handshakes.probe.log",
        )  # fmt: skip
        baseline_started = time.monotonic()
        await asyncio.sleep(BASELINE)
        baseline_ended = time.monotonic()
        first = await log_mark(stack)
        cpu = CpuMeter({"chat": stack.chats[0], "auth": stack.auth})
        attack_started = time.monotonic()
        statuses, seconds = await handshake_flood(
            stack.chat_ports[0], until=attack_started + size["handshake_seconds"]
        )
        attack_ended = time.monotonic()
        out.put("attack.cpu", cpu.read())
        done = sum(statuses.values())
        out.put("attack.handshakes", done)
        out.put("attack.per_second", round(done / seconds))
        out.put("attack.statuses", dict(sorted(statuses.items())))
        try:
            last = await log_mark(stack)
            introspections: int | str = requests_between(stack.auth_log, "/introspect", first, last)
        except StackError as error:
            introspections = f"not measured: {error}"
        out.put("attack.introspections", introspections)
        samples, _ = await probe.stop()
        probe = None
        out.put("legit.baseline", summarize(samples, baseline_started, baseline_ended))
        out.put("legit.during_attack", summarize(samples, attack_started, attack_ended))
        out.put("process", describe(stack.chats[0]))
    finally:
        if probe is not None:
            with contextlib.suppress(Exception):
                await probe.stop()
        stack.stop()

"""The five scenarios of `make bench`, each bounded in time, each returning plain figures."""

from __future__ import annotations

import asyncio
import resource
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.clients import BenchClient
from bench.systems import Running, rss_kib

ROOM = "bench-room"
Headers = Callable[[int], dict[str, str]]  # connection index -> handshake headers


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meter:
    """Wall time and the load generator's own CPU over one scenario."""

    started: float = field(default_factory=time.perf_counter)
    cpu: float = field(default_factory=cpu_seconds)

    def loadgen_cpu(self) -> float:
        """Fraction of one core the load generator used; near 1.0 means it, not the server,
        was the bottleneck, and the figures are flagged."""
        return round((cpu_seconds() - self.cpu) / (time.perf_counter() - self.started), 2)


def percentile(values: Any, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value: float) -> float:
    return round(value * 1000, 2)


async def handshakes(
    system: Running, session: aiohttp.ClientSession, headers: Headers, count: int, concurrency: int
) -> dict[str, Any]:
    """`count` connections, `concurrency` at a time: connect, wait for hello, close."""
    slots = asyncio.Semaphore(concurrency)
    times: list[float] = []
    failures = 0

    async def one(index: int) -> None:
        nonlocal failures
        async with slots:
            client = system.client(session, 0)
            try:
                times.append(await client.connect(headers(index)))
            except Exception:
                failures += 1
            finally:
                await client.close()

    meter = Meter()
    await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.perf_counter() - meter.started
    return {
        "connections": count,
        "failures": failures,
        "conn_per_s": round(len(times) / wall, 1),
        "hello_p50_ms": ms(percentile(times, 0.50)),
        "hello_p99_ms": ms(percentile(times, 0.99)),
        "loadgen_cpu": meter.loadgen_cpu(),
    }


class Audience:
    """Subscribers of one room split over the two instances, recording every delivery."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.received = [bytearray() for _ in range(subscribers)]
        self.duplicates = 0
        self.latencies = array("d")
        self.last_receive = 0.0
        self.clients: list[BenchClient] = []
        self._sent_at: dict[int, float] = {}

    def sink(self, index: int) -> Callable[[str, float], None]:
        seen = self.received[index]

        def record(text: str, received: float) -> None:
            seq = int(text.split(" ", 1)[0])
            if seq >= len(seen):
                seen.extend(bytes(seq + 1 - len(seen)))
            if seen[seq]:
                self.duplicates += 1
                return
            seen[seq] = 1
            sent = self._sent_at.get(seq)
            if sent is not None:
                self.latencies.append(received - sent)
            self.last_receive = received

        return record

    def sent(self, seq: int, at: float) -> None:
        self._sent_at[seq] = at

    async def gather(
        self, system: Running, session: aiohttp.ClientSession, headers: Headers
    ) -> None:
        for index in range(self.subscribers):
            client = system.client(session, index % 2, self.sink(index))
            await client.connect(headers(index))
            await client.join(ROOM)
            self.clients.append(client)

    def delivered(self, among: range | None = None) -> int:
        indexes = among if among is not None else range(self.subscribers)
        return sum(self.received[i].count(1) for i in indexes)

    async def wait_for(self, last_seq: int, among: range, deadline: float) -> None:
        """Until everyone in `among` has the last message, or the deadline passes."""
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            if all(len(self.received[i]) > last_seq and self.received[i][last_seq] for i in among):
                return
            await asyncio.sleep(0.05)  # polling the recorded deliveries, at the bench's pace

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self.clients), return_exceptions=True)


async def publish(
    publisher: BenchClient,
    audience: Audience,
    *,
    seconds: float,
    window: int,
    rate: float | None,
    padding: int = 0,
) -> tuple[int, float]:
    """Sends for `seconds` with at most `window` unacknowledged messages, and at `rate`
    messages per second if given; returns (messages sent, seconds spent sending)."""
    in_flight = asyncio.Semaphore(window)
    pending: set[asyncio.Future[Any]] = set()
    pad = "x" * padding
    started = time.perf_counter()
    seq = 0
    while (now := time.perf_counter()) - started < seconds:
        if rate is not None:
            due = started + seq / rate
            if due > now:
                await asyncio.sleep(due - now)
        await in_flight.acquire()
        audience.sent(seq, time.perf_counter())
        acked = await publisher.send(ROOM, f"{seq} {pad}")
        pending.add(acked)
        acked.add_done_callback(lambda done: (pending.discard(done), in_flight.release()))
        seq += 1
    await asyncio.gather(*pending, return_exceptions=True)
    return seq, time.perf_counter() - started


async def fan_out(
    system: Running,
    session: aiohttp.ClientSession,
    headers: Headers,
    *,
    subscribers: int,
    seconds: float,
    window: int,
    rate: float | None = None,
    slow: int = 0,
    padding: int = 0,
) -> dict[str, Any]:
    """One room, `subscribers` over both instances, one publisher on instance A. With `slow`,
    that many subscribers stop reading once joined."""
    audience = Audience(subscribers)
    await audience.gather(system, session, headers)
    publisher = system.client(session, 0)
    await publisher.connect(headers(subscribers))
    await publisher.join(ROOM)
    slow_ones = range(subscribers - slow, subscribers)
    for index in slow_ones:
        audience.clients[index].stop_reading()
    readers = range(subscribers - slow)
    rss_before = sum(rss_kib(system.pid(i)) for i in (0, 1))
    meter = Meter()
    closed_at: dict[int, float] = {}

    async def watch_slow_ones() -> None:
        while True:  # sampling the kernel's view every 100 ms: a measurement, not a sync
            for index in slow_ones:
                if index not in closed_at and audience.clients[index].server_has_closed():
                    closed_at[index] = time.perf_counter() - meter.started
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_slow_ones()) if slow else None
    sent, sending = await publish(
        publisher, audience, seconds=seconds, window=window, rate=rate, padding=padding
    )
    await audience.wait_for(sent - 1, readers, deadline=15)
    rss_after = sum(rss_kib(system.pid(i)) for i in (0, 1))
    span = max(audience.last_receive - meter.started, sending)
    expected = sent * len(readers)
    delivered = audience.delivered(readers)
    lat = audience.latencies
    result: dict[str, Any] = {
        "subscribers": subscribers,
        "messages": sent,
        "msgs_per_s": round(sent / sending, 1),
        "deliveries_per_s": round(delivered / span, 1),
        "p50_ms": ms(percentile(lat, 0.50)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "p999_ms": ms(percentile(lat, 0.999)),
        "lost": expected - delivered,
        "duplicated": audience.duplicates,
        "loadgen_cpu": meter.loadgen_cpu(),
    }
    if watcher is not None:
        watcher.cancel()
        result.update(
            {
                "slow": slow,
                "rss_growth_kib": rss_after - rss_before,
                "slow_closed": len(closed_at),
                "slow_closed_after_s": round(max(closed_at.values()), 2) if closed_at else None,
            }
        )
    await publisher.close()
    await audience.close()
    return result


async def idle_memory(
    system: Running, session: aiohttp.ClientSession, headers: Headers, count: int
) -> dict[str, Any]:
    """`count` idle connections on instance A: resident memory per connection."""
    before = rss_kib(system.pid(0))
    clients: list[BenchClient] = []
    slots = asyncio.Semaphore(50)

    async def one(index: int) -> None:
        async with slots:
            client = system.client(session, 0)
            await client.connect(headers(index))
            clients.append(client)

    await asyncio.gather(*(one(i) for i in range(count)))
    await asyncio.sleep(2)  # let the server settle before reading its memory
    after = rss_kib(system.pid(0))
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "connections": len(clients),
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "kib_per_connection": round((after - before) / max(len(clients), 1), 2),
    }

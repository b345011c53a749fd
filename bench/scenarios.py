"""The five scenarios of `make bench`, each bounded in time, each returning plain figures."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench import loadgen
from bench.clients import BenchClient
from bench.systems import Running, cpu_seconds_of, rss_kib

ROOM = "bench-room"
Headers = Callable[[int], dict[str, str]]  # connection index -> handshake headers
ACK_TIMEOUT = 30.0  # seconds, after the last send, for the outstanding acknowledgements


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Wall time, and the CPU of the servers and of the Python side of the load generator,
    over one scenario. Both figures are fractions of one core: the servers share core 0, the
    load generator (with Redis) core 1. A run is believed when the servers' core was the one
    that was full."""

    def __init__(self, server_pids: list[int]) -> None:
        self._pids = server_pids
        self.started_ns = time.monotonic_ns()
        self._cpu = cpu_seconds()
        self._server_cpu = cpu_seconds_of(server_pids)

    def seconds(self) -> float:
        return (time.monotonic_ns() - self.started_ns) / 1e9

    def figures(self, loadgen_cpu_s: float = 0.0) -> dict[str, float]:
        """`loadgen_cpu_s`: CPU seconds wsload reported for the same span."""
        wall = self.seconds()
        python = cpu_seconds() - self._cpu
        servers = cpu_seconds_of(self._pids) - self._server_cpu
        return {
            "loadgen_cpu": round((python + loadgen_cpu_s) / wall, 2),
            "server_cpu": round(servers / wall, 2),
        }


async def handshakes(
    system: Running, headers: Headers, count: int, concurrency: int
) -> dict[str, Any]:
    """`count` connections, `concurrency` at a time: connect, wait for hello, close."""
    meter = Meter(system.server_pids())
    result = await loadgen.handshakes(
        system.urls[0], system.protocol, [headers(i) for i in range(count)], concurrency
    )
    result["server_cpu"] = meter.figures()["server_cpu"]
    return result


@dataclass
class Published:
    sent: int  # messages
    seconds: float  # spent sending, acknowledgements included
    behind_ms: float | None  # at a fixed rate: how late the last message went out
    send_errors: int  # sends answered with an error, or not acknowledged in ACK_TIMEOUT


async def publish(
    publisher: BenchClient, *, seconds: float, window: int, rate: float | None, padding: int
) -> Published:
    """Sends for `seconds` with at most `window` unacknowledged messages, and at `rate`
    messages per second if given. Each text is "SEQ SENT_NS PADDING", SENT_NS on the
    monotonic clock wsload reads too. At a fixed rate SENT_NS is when the message was due,
    not when it went out, so time the publisher spent behind schedule (waiting for the window,
    or for the event loop) counts as latency instead of being hidden (coordinated omission)."""
    in_flight = asyncio.Semaphore(window)
    pending: set[asyncio.Future[Any]] = set()
    pad = "x" * padding
    errors = 0

    def settled(done: asyncio.Future[Any]) -> None:
        nonlocal errors
        pending.discard(done)
        in_flight.release()
        if not done.cancelled() and done.exception() is not None:
            errors += 1

    started_ns = time.monotonic_ns()
    span_ns = seconds * 1e9
    seq = 0
    late_ns = 0
    while (now_ns := time.monotonic_ns()) - started_ns < span_ns:
        stamp_ns = None
        if rate is not None:
            stamp_ns = started_ns + int(seq * 1e9 / rate)  # when this message is due
            if stamp_ns > now_ns:
                await asyncio.sleep((stamp_ns - now_ns) / 1e9)
        await in_flight.acquire()
        sent_ns = time.monotonic_ns()
        if stamp_ns is None:
            stamp_ns = sent_ns  # no schedule: the send time is the only time there is
        else:
            late_ns = max(0, sent_ns - stamp_ns)
        acked = await publisher.send(ROOM, f"{seq} {stamp_ns} {pad}")
        pending.add(acked)
        acked.add_done_callback(settled)
        seq += 1
    if pending:
        _, unanswered = await asyncio.wait(set(pending), timeout=ACK_TIMEOUT)
        errors += len(unanswered)
        for waiter in unanswered:
            waiter.cancel()  # counted above; `settled` does not count a cancelled one
    return Published(
        sent=seq,
        seconds=(time.monotonic_ns() - started_ns) / 1e9,
        behind_ms=round(late_ns / 1e6, 2) if rate is not None else None,
        send_errors=errors,
    )


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
    audience = loadgen.Subscribers(
        system.urls, system.protocol, ROOM, [headers(i) for i in range(subscribers)], slow
    )
    async with audience:
        publisher = system.client(session, 0)
        await publisher.connect(headers(subscribers))
        await publisher.join(ROOM)
        rss_before = sum(rss_kib(system.pid(i)) for i in (0, 1))
        meter = Meter(system.server_pids())
        await audience.start()
        published = await publish(
            publisher, seconds=seconds, window=window, rate=rate, padding=padding
        )
        sent, sending = published.sent, published.seconds
        received = await audience.finish(sent - 1, deadline=15)
        await publisher.close()
    rss_after = sum(rss_kib(system.pid(i)) for i in (0, 1))
    readers = received["readers"]
    span = max((received["last_receive_ns"] - meter.started_ns) / 1e9, sending)
    result: dict[str, Any] = {
        "subscribers": subscribers,
        "messages": sent,
        "msgs_per_s": round(sent / sending, 1),
        "deliveries_per_s": round(received["delivered"] / span, 1),
        "p50_ms": received["p50_ms"],
        "p99_ms": received["p99_ms"],
        "p999_ms": received["p999_ms"],
        "lost": sent * readers - received["delivered"],
        "duplicated": received["duplicates"],
        "send_errors": published.send_errors,
        "unparsed_frames": received["errors"],
        "readers_closed_by_server": received["readers_closed"],
        **meter.figures(received["cpu_s"]),
    }
    if published.behind_ms is not None:
        result["behind_ms"] = published.behind_ms
    if slow:
        closed = [(at - meter.started_ns) / 1e9 for at in received["slow_closed_ns"]]
        result.update(
            {
                "slow": slow,
                "rss_growth_kib": rss_after - rss_before,
                "slow_closed": len(closed),
                "slow_closed_after_s": round(max(closed), 2) if closed else None,
            }
        )
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


def no_credentials(index: int) -> dict[str, str]:
    return {}


def bearer(tokens: list[str]) -> Headers:
    """Socket `index` presents `tokens[index]`."""

    def headers(index: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[index]}"}

    return headers

"""The auth service under load (`make bench --scenarios auth-core,introspection`).

**auth-core**: first-time handshakes (every token new to the chat service, so each costs one
`/introspect` round trip) with the auth process moved off the servers' core. The machine has
two cores: by default chat instance A, chat instance B and the auth process share core 0, so
every first-time handshake's two halves (chat and auth) queue for one core. Here the auth
process (all its threads) is moved to core 1 for the scenario and back afterwards, so core 0
carries the chat instances only and core 1 carries the auth process *with* Redis and the load
generator (wsload's handshake threads and this driver). The trade-off: the chat side gets a
core of its own, but the auth process now competes with the load generator, so the scenario
reports both cores' busy share (from /proc/stat); when core 1 is full and core 0 is not, the
figure is the load generator's and auth's shared limit, not the chat service's.

**introspection**: requests/s of `POST /introspect` (HTTP Basic client credentials, a
distinct valid access token in each of consecutive requests) against the one auth process,
pinned to core 0 as shipped (the two chat instances idle beside it), and the auth process's
CPU per introspection from /proc/PID/stat. The client is a few lines of HTTP/1.1 on raw
asyncio streams with keep-alive, so that the load generator's cost per request stays a
fraction of the server's (aiohttp's client costs about as much as the server it measures).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from bench import loadgen, profiles
from bench.systems import CLIENT_ID, CLIENT_SECRET, REDIS_CORE, SERVER_CORE, Running, cpu_seconds_of

PASSWORD = "bench password 123"
CONNECTIONS = 32  # concurrent /introspect requests: enough to keep one process busy
MAX_TOKENS = 100_000  # every input bounded: the pre-built requests are held in memory


async def mint_tokens(
    system: Running, session: aiohttp.ClientSession, count: int, *, users: int, prefix: str
) -> list[str]:
    """`count` access tokens for `users` users named `<prefix><n>` (registered if new),
    by the password grant, 20 at a time."""
    assert system.auth_url is not None
    assert 0 < count <= MAX_TOKENS
    slots = asyncio.Semaphore(20)

    async def register(n: int) -> None:
        body = {"username": f"{prefix}{n}", "password": PASSWORD}
        async with slots, session.post(f"{system.auth_url}/users", json=body) as response:
            if response.status not in (201, 409):  # 409: registered by an earlier scenario
                raise RuntimeError(f"registering {body['username']} answered {response.status}")

    async def grant(index: int) -> str:
        user = f"{prefix}{index % users}"
        form = {"grant_type": "password", "username": user, "password": PASSWORD}
        async with slots, session.post(f"{system.auth_url}/token", data=form) as response:
            if response.status != 200:
                raise RuntimeError(f"password grant answered {response.status}")
            return str((await response.json())["access_token"])

    await asyncio.gather(*(register(n) for n in range(min(users, count))))
    return list(await asyncio.gather(*(grant(i) for i in range(count))))


def pin_threads(pid: int, core: str) -> None:
    """Every thread of `pid` onto `core` (sched_setaffinity on a pid moves one thread only)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), {int(core)})


class CoreMeter:
    """The busy share of cores 0 and 1 over a span, from /proc/stat (everything on them)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> dict[str, tuple[int, int]]:
        ticks = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name in ("cpu0", "cpu1"):
                values = [int(f) for f in fields]
                idle = values[3] + values[4]  # idle and iowait
                ticks[name] = (sum(values) - idle, sum(values))
        return ticks

    def busy(self) -> dict[str, float]:
        end = self._read()
        return {
            f"core{name[-1]}_busy": round(
                (end[name][0] - self._start[name][0]) / max(1, end[name][1] - self._start[name][1]),
                2,
            )
            for name in end
        }


async def first_time_auth_core(
    system: Running, tokens: list[str], concurrency: int
) -> dict[str, Any]:
    """wsload's handshakes with first-time tokens on instance A, the auth process on core 1."""
    auth = system.helpers[0].pid
    chat, chats = system.pid(0), [system.pid(0), system.pid(1)]
    pin_threads(auth, REDIS_CORE)
    try:
        cores = CoreMeter()
        chat_cpu, auth_cpu = cpu_seconds_of([chat]), cpu_seconds_of([auth])
        both_cpu = cpu_seconds_of(chats)
        started = time.monotonic()
        result = await loadgen.handshakes(
            system.urls[0],
            system.protocol,
            [{"Authorization": f"Bearer {token}"} for token in tokens],
            concurrency,
        )
        wall = time.monotonic() - started
        result.update(cores.busy())
        result["chat_cpu"] = round((cpu_seconds_of([chat]) - chat_cpu) / wall, 2)
        result["auth_cpu"] = round((cpu_seconds_of([auth]) - auth_cpu) / wall, 2)
        # Anything else on core 0 (another run's servers) makes the figure no figure.
        others = result["core0_busy"] - (cpu_seconds_of(chats) - both_cpu) / wall
        result["core0_others"] = round(max(0.0, others), 2)
    finally:
        pin_threads(auth, SERVER_CORE)  # the scenarios after this one run as shipped
    result["pinning"] = "core 0: chat A and B; core 1: auth, Redis, load generator"
    # As run.py's loadgen-bound flag reads it: core 1 full, the servers' core not.
    result["server_cpu"] = result["core0_busy"]
    result["loadgen_cpu"] = result["core1_busy"]
    return result


def introspection_requests(auth_url: str, tokens: list[str]) -> list[bytes]:
    """One complete HTTP/1.1 request per token, built before the clock starts."""
    parts = urlsplit(auth_url)
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    requests = []
    for token in tokens:
        body = urlencode({"token": token, "token_type_hint": "access_token"}).encode()
        head = (
            f"POST /introspect HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Basic {basic}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


@dataclasses.dataclass
class Tally:
    """What the connections saw: answers, failures (not 200 or not active), latencies."""

    answered: int = 0
    failures: int = 0
    first_failure: str = ""
    latencies_ns: list[int] = dataclasses.field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failures += 1
        self.first_failure = self.first_failure or why


async def _connection(
    host: str, port: int, requests: list[bytes], offset: int, until_ns: int, tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    try:
        while time.monotonic_ns() < until_ns:
            sent_ns = time.monotonic_ns()
            writer.write(requests[index % len(requests)])
            index += CONNECTIONS  # consecutive requests, distinct tokens
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            tally.latencies_ns.append(time.monotonic_ns() - sent_ns)
            tally.answered += 1
            if head[9:12] != b"200":
                tally.fail(f"status {head[9:12].decode(errors='replace')}")
            elif json.loads(body).get("active") is not True:
                tally.fail("inactive answer for a valid token")
    finally:
        writer.close()


def _percentile_ms(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    return round(sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e6, 2)


async def introspection(
    system: Running, tokens: list[str], seconds: float, profile: set[str]
) -> dict[str, Any]:
    """`CONNECTIONS` keep-alive connections asking `/introspect` for `seconds`."""
    assert system.auth_url is not None
    auth = system.helpers[0].pid
    chats = [system.pid(0), system.pid(1)]
    parts = urlsplit(system.auth_url)
    assert parts.hostname is not None
    assert parts.port is not None
    requests = introspection_requests(system.auth_url, tokens)
    tally = Tally()
    # The profile covers the auth process only: the chat instances are idle meanwhile.
    only_auth = dataclasses.replace(system, processes=[], helpers=system.helpers[:1])
    async with profiles.recording(only_auth, "introspection", profile):
        cores = CoreMeter()
        auth_cpu, own_cpu = cpu_seconds_of([auth]), time.process_time()
        chat_cpu = cpu_seconds_of(chats)
        started_ns = time.monotonic_ns()
        until_ns = started_ns + int(seconds * 1e9)
        await asyncio.gather(
            *(
                _connection(parts.hostname, parts.port, requests, n, until_ns, tally)
                for n in range(CONNECTIONS)
            )
        )
        wall = (time.monotonic_ns() - started_ns) / 1e9
        auth_used = cpu_seconds_of([auth]) - auth_cpu
        chat_used = cpu_seconds_of(chats) - chat_cpu
        own_used = time.process_time() - own_cpu
        busy = cores.busy()
    latencies = sorted(tally.latencies_ns)
    return {
        "pinning": "core 0: auth (chat A and B idle); core 1: Redis, load generator",
        "requests": tally.answered,
        "distinct_tokens": len(tokens),
        "requests_per_s": round(tally.answered / wall, 1),
        "p50_ms": _percentile_ms(latencies, 0.50),
        "p99_ms": _percentile_ms(latencies, 0.99),
        "failures": tally.failures,
        "first_failure": tally.first_failure,
        "auth_cpu_us_per_request": round(1e6 * auth_used / max(1, tally.answered), 1),
        "server_cpu": round(auth_used / wall, 2),  # the auth process's share of core 0
        "loadgen_cpu": round(own_used / wall, 2),  # this driver's share of core 1
        **busy,
        # Core 0 busy with anything but ours (another run's servers): the rate is not ours.
        "core0_others": round(max(0.0, busy["core0_busy"] - (auth_used + chat_used) / wall), 2),
    }

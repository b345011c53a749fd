"""Scenario `slow` (finding 1): requests that are started and never finished.

(a) The auth service, run with 1,024 file descriptors, gets connections that each send a
`POST /token` head announcing a 100,000-byte body, 10 bytes of it, then nothing. Measured:
how many connected, what the service answered within 15 s and how many it still holds then;
a `/healthz` and a real login while they are held (at 5 s) and once its body deadline has
passed (at 14 s); after they close, what its log says.
(b) A chat instance gets connections that send part of a request head and nothing more:
how many it has closed after 10 s and after 20 s, and a `/healthz` meanwhile.

The attacker's connections come from `ATTACKER_SOURCES` addresses in turn (an attacker
with a few hosts, so that a per-address limit alone cannot decide the outcome); the
legitimate requests come from another address (`VICTIM`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.attack_measure import VICTIM, log_figures, sleep_until, timed_request
from bench.attack_report import Figures, Part
from bench.attack_stack import PASSWORD, describe, start_stack, users_with_tokens
from bench.attack_ws import close_writer

AUTH_FD_LIMIT = 1024
SLOW_BODY = (
    b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
    b"grant_type"  # 10 of the 100,000 bytes announced
)
SLOW_HEAD = b"GET /ws HTTP/1.1\r\nHost: x\r\n"  # the blank line that ends a head never comes
CONNECT_TIMEOUT = 3.0
CONNECTING_AT_ONCE = 256
ATTACKER_SOURCES = [f"127.0.1.{n}" for n in range(1, 9)]


@dataclass
class Held:
    """One slow connection, and what the server did with it (monotonic times)."""

    writer: asyncio.StreamWriter
    opened_at: float
    watcher: asyncio.Task[None] | None = None
    status: str | None = None  # of an answer, if one came
    answered_at: float | None = None
    closed_at: float | None = None  # by the server (end of stream or reset)


async def _watch(held: Held, reader: asyncio.StreamReader) -> None:
    try:
        while data := await reader.read(4096):
            if held.status is None:
                held.answered_at = time.monotonic()
                parts = data.split(b" ", 2)
                held.status = parts[1].decode(errors="replace") if len(parts) > 1 else "?"
    except OSError:
        pass
    held.closed_at = time.monotonic()


async def open_held(port: int, request: bytes, count: int) -> tuple[list[Held], Counter[str]]:
    """`count` connections that each send `request` and then wait; the failed ones by why."""
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def one(n: int) -> Held | str:
        source = ATTACKER_SOURCES[n % len(ATTACKER_SOURCES)]
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)),
                    CONNECT_TIMEOUT,
                )
            except TimeoutError:
                return "connect timeout"
            except OSError as error:
                return type(error).__name__
        held = Held(writer, time.monotonic())
        writer.write(request)
        held.watcher = asyncio.create_task(_watch(held, reader))
        return held

    results = await asyncio.gather(*(one(n) for n in range(count)))
    held = [r for r in results if isinstance(r, Held)]
    return held, Counter(r for r in results if isinstance(r, str))


async def release(held: list[Held]) -> None:
    watchers = [h.watcher for h in held if h.watcher is not None]
    for watcher in watchers:
        watcher.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    await asyncio.gather(*(close_writer(h.writer) for h in held))


def open_fds(pid: int) -> int | str:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return "not measured (process gone)"


def fd_limit_of(pid: int) -> str:
    """The process's descriptor limit as the kernel applies it (soft/hard)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft}/{hard}"
    return "not found"


def accept_queue(port: int) -> int | None:
    """Connections the kernel completed that the listening socket has not accepted yet."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):  # 0A: LISTEN
            return int(fields[4].split(":")[1], 16)
    return None


def answered(held: list[Held], within: float) -> dict[str, int]:
    counts = Counter(
        h.status
        for h in held
        if h.status is not None and h.answered_at is not None
        and h.answered_at - h.opened_at <= within
    )  # fmt: skip
    return dict(sorted(counts.items()))


async def slow_auth(source: Path, logs: Path, count: int, out: Part) -> None:
    stack = await start_stack(source, logs, "slow-a", chats=0, auth_fd_limit=AUTH_FD_LIMIT)
    held: list[Held] = []
    try:
        await users_with_tokens(stack.auth_url, ["slowpoke"])
        login_form = {"grant_type": "password", "username": "slowpoke", "password": PASSWORD}
        out.put("fd_limit", fd_limit_of(stack.auth.pid))
        out.put("fds_before", open_fds(stack.auth.pid))
        started = time.monotonic()
        held, failed = await open_held(stack.auth_port, SLOW_BODY, count)
        out.put("connections", count)
        out.put("connected", len(held))
        out.put("connect_failures", dict(failed))
        for mark in (5, 14):
            await sleep_until(started + mark)
            healthz, login = await asyncio.gather(
                timed_request("GET", f"{stack.auth_url}/healthz", local_addr=VICTIM),
                timed_request(
                    "POST", f"{stack.auth_url}/token", data=login_form, local_addr=VICTIM
                ),
            )
            out.put(f"healthz_at_{mark}s", healthz)
            out.put(f"login_at_{mark}s", login)
            out.put(f"fds_at_{mark}s", open_fds(stack.auth.pid))
            out.put(f"accept_queue_at_{mark}s", accept_queue(stack.auth_port))
        await sleep_until(max((h.opened_at for h in held), default=started) + 15)
        out.put("answered_within_15s", answered(held, 15))
        out.put("open_at_15s", sum(h.closed_at is None for h in held))
        await release(held)
        held = []
        await asyncio.sleep(3)  # what the service does once they are gone: 3 s of it
        out.put("log_after_close", log_figures(stack.auth_log))
        out.put("healthz_after_close", await timed_request("GET", f"{stack.auth_url}/healthz"))
        out.put("process", describe(stack.auth))
    finally:
        await release(held)
        stack.stop()


async def slow_chat(source: Path, logs: Path, count: int, out: Part) -> None:
    stack = await start_stack(source, logs, "slow-b", chats=1)
    held: list[Held] = []
    try:
        started = time.monotonic()
        held, failed = await open_held(stack.chat_ports[0], SLOW_HEAD, count)
        out.put("connections", count)
        out.put("connected", len(held))
        out.put("connect_failures", dict(failed))
        await sleep_until(started + 5)
        healthz = await timed_request("GET", f"{stack.chat_url()}/healthz", local_addr=VICTIM)
        out.put("healthz_at_5s", healthz)
        last = max((h.opened_at for h in held), default=started)
        for mark in (10, 20):
            await sleep_until(last + mark)
            out.put(f"closed_by_server_at_{mark}s", sum(h.closed_at is not None for h in held))
        closed_after = [h.closed_at - h.opened_at for h in held if h.closed_at is not None]
        out.put(
            "median_s_to_close",
            round(statistics.median(closed_after), 2) if closed_after else None,
        )
        out.put("answers", answered(held, 20))
        out.put("process", describe(stack.chats[0]))
    finally:
        await release(held)
        stack.stop()


async def run(source: Path, logs: Path, size: dict[str, Any], out: Figures) -> None:
    for part, measure, count in (
        ("auth", slow_auth, size["slow_auth_connections"]),
        ("chat", slow_chat, size["slow_chat_connections"]),
    ):
        try:
            await measure(source, logs, count, out.under(part))
        except Exception as error:  # recorded: the other part still runs
            out.put(f"{part}.error", f"{type(error).__name__}: {error}")

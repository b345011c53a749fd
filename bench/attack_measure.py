"""What the attacks are measured with, from outside the services: one timed request, CPU
from /proc, and the auth service's log (its access-log lines, errors and size)."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.attack_stack import Stack, StackError, describe
from bench.systems import cpu_seconds_of

VICTIM = "127.0.0.2"  # the legitimate clients' source address: all of 127/8 reaches 127.0.0.1


async def timed_request(
    method: str,
    url: str,
    *,
    within: float = 5.0,
    data: dict[str, str] | None = None,
    local_addr: str | None = None,
) -> dict[str, Any]:
    """One request on a new connection (from `local_addr` if given): its status (or
    "timeout", or the error) and time."""
    started = time.monotonic()
    connector = aiohttp.TCPConnector(
        force_close=True, local_addr=None if local_addr is None else (local_addr, 0)
    )
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            asyncio.timeout(within),
            session.request(method, url, data=data) as response,
        ):
            await response.read()
            status: int | str = response.status
    except TimeoutError:
        status = "timeout"
    except (aiohttp.ClientError, OSError) as error:
        status = f"error: {type(error).__name__}"
    return {"status": status, "ms": round((time.monotonic() - started) * 1000, 1)}


async def sleep_until(moment: float) -> None:
    """Waits for a point in time (monotonic): pacing by the clock, not synchronisation."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


class CpuMeter:
    """CPU used by some processes between its creation and `read()` (utime + stime): as a
    share of one core over that time, and in seconds (comparable across windows of
    different lengths)."""

    def __init__(self, processes: dict[str, subprocess.Popen[bytes]]) -> None:
        self._processes = processes
        self._started = time.monotonic()
        self._seconds = {name: self._cpu(p) for name, p in processes.items()}

    @staticmethod
    def _cpu(process: subprocess.Popen[bytes]) -> float | None:
        try:
            return cpu_seconds_of([process.pid])
        except (OSError, IndexError, ValueError):
            return None  # gone, or reaped: reported as not measured

    def read(self) -> dict[str, float | str]:
        wall = time.monotonic() - self._started
        out: dict[str, float | str] = {}
        for name, process in self._processes.items():
            before, after = self._seconds[name], self._cpu(process)
            if before is None or after is None or process.poll() is not None:
                out[name] = f"not measured ({describe(process)})"
            else:
                out[f"{name}_pct"] = round(100 * (after - before) / wall, 1)
                out[f"{name}_s"] = round(after - before, 2)
        return out


async def log_mark(stack: Stack) -> str:
    """Asks the auth service for a unique path and waits until its access-log line is written:
    requests answered before it are in the log by then, so counts between two marks are the
    requests of the phase between them."""
    path = f"/attack-mark-{secrets.token_hex(6)}"
    await timed_request("GET", stack.auth_url + path, within=15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if f'"{path}"' in stack.auth_log.read_text(errors="replace"):
            return path
        await asyncio.sleep(0.1)  # another process's file: there is no event to wait on
    raise StackError(f"the auth service did not log {path} within 15 s")


def log_entries(log: Path) -> list[dict[str, Any]]:
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def requests_between(log: Path, path: str, first_mark: str, last_mark: str) -> int:
    """Access-log lines for `path` after the line of `first_mark` and before `last_mark`."""
    count, inside = 0, False
    for entry in log_entries(log):
        if entry.get("msg") != "request":
            continue
        if entry.get("path") == first_mark:
            inside = True
        elif entry.get("path") == last_mark:
            break
        elif inside and entry.get("path") == path:
            count += 1
    return count


def log_figures(log: Path) -> dict[str, int]:
    """Error-level lines, tracebacks, accept() failures and the size of a service's log."""
    errors = tracebacks = accepts = 0
    with log.open(errors="replace") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
                level = str(entry.get("level", "")) if isinstance(entry, dict) else ""
            except ValueError:
                level = ""
            errors += level in ("error", "critical")
            tracebacks += "Traceback" in line or "unhandled error" in line.lower()
            accepts += "accept()" in line
    return {
        "error_lines": errors,
        "traceback_lines": tracebacks,
        "accept_lines": accepts,
        "log_bytes": log.stat().st_size,
    }

"""The compiled half of the load generator: `wsload` (wsload.c), built on first use.

Python parsed every delivery at about 7 µs each and used a whole core near 130 k deliveries/s,
so it could not tell a server's limit from its own. `wsload` opens the connections of the
handshake scenario (one thread per concurrent connection), receives every subscriber's
messages (epoll, one read per readiness event), and holds the recovery storm's subscribers
(`storm`, bench/loadgen/storm.py) and the presence churn's churners (`churn`,
bench/loadgen/churn.py); the publishers stay in Python. Message texts
carry the publisher's `time.monotonic_ns()`, and wsload measures latency on the same clock.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
SOURCES = tuple(HERE / name for name in ("wsload.c", "json.c", "storm.c", "churn.c"))
BINARY = HERE.parent / "results" / "wsload"


def build() -> Path:
    """Compiles wsload when it is missing or older than any of its sources (and wsload.h,
    which they all include); returns its path."""
    newest = max(source.stat().st_mtime for source in (*SOURCES, HERE / "wsload.h"))
    if BINARY.exists() and BINARY.stat().st_mtime >= newest:
        return BINARY
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("make bench needs a C compiler (cc or gcc) to build bench/loadgen")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [compiler, "-O2", "-Wall", "-Wextra", "-pthread", "-o", str(BINARY),
         *map(str, SOURCES)],
        check=True,
    )  # fmt: skip
    return BINARY


def address(url: str) -> tuple[str, str, str]:
    """(host, port, path with query) of a ws URL, as wsload takes them."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"bench URLs name a host and a port: {url}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, str(parts.port), path


def header_lines(headers: list[dict[str, str]]) -> bytes:
    """One line per connection: its only handshake header, or an empty line."""
    lines: list[str] = []
    for header in headers:
        if len(header) > 1:
            raise ValueError("wsload sends at most one extra handshake header per connection")
        lines.extend(f"{name}: {value}" for name, value in header.items())
        if not header:
            lines.append("")
    if any("\n" in line or "\r" in line for line in lines):
        raise ValueError("a handshake header may not contain a line break")
    return "".join(f"{line}\n" for line in lines).encode()


async def handshakes(
    url: str, protocol: str, headers: list[dict[str, str]], concurrency: int
) -> dict[str, Any]:
    """Opens len(headers) connections, `concurrency` at a time, each closed after its hello."""
    host, port, path = address(url)
    process = await asyncio.create_subprocess_exec(
        str(build()), "handshakes", host, port, path, protocol, str(len(headers)),
        str(concurrency), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate(header_lines(headers))
    if process.returncode != 0:
        raise RuntimeError(f"wsload handshakes exited with {process.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


class Process:
    """A wsload process: started with its header lines, told commands, read one line each."""

    def __init__(self, mode: str, argv: list[str], headers: list[dict[str, str]]) -> None:
        self._mode = mode
        self._argv = argv
        self._headers = headers
        self._process: asyncio.subprocess.Process | None = None

    async def open(self, within: float) -> None:
        """Starts it and waits (up to `within` seconds) for its "ready"."""
        self._process = process = await asyncio.create_subprocess_exec(
            str(build()), self._mode, *self._argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write(header_lines(self._headers))
        await process.stdin.drain()
        await self.expect(b"ready\n", within)

    async def command(self, line: str) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(line.encode() + b"\n")
        await self._process.stdin.drain()

    async def line(self, within: float) -> bytes:
        assert self._process is not None
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"wsload {self._mode} exited with {await self._process.wait()}")
        return line

    async def figures(self, within: float) -> dict[str, Any]:
        """Its next line, a JSON object."""
        result: dict[str, Any] = json.loads(await self.line(within))
        return result

    async def expect(self, answer: bytes, within: float) -> None:
        line = await self.line(within)
        if line != answer:
            raise RuntimeError(f"wsload {self._mode} answered {line!r}, not {answer!r}")

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


class Mode:
    """A wsload mode on a room over two instances (`urls[0]` and `urls[1]`), driven line by
    line: `extra` is what the mode takes after the room's address; entered once wsload
    printed "ready" (its sockets set up), killed on leaving."""

    SET_UP_TIMEOUT_S = 120.0

    def __init__(
        self, mode: str, urls: list[str], extra: list[str], headers: list[dict[str, str]]
    ) -> None:
        (host, port_a, path), (_, port_b, _) = address(urls[0]), address(urls[1])
        self._wsload = Process(mode, [host, port_a, port_b, path, *extra], headers)

    async def __aenter__(self) -> Self:
        await self._wsload.open(self.SET_UP_TIMEOUT_S)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self._wsload.close()


class Subscribers(Mode):
    """`wsload subscribe`: the room's subscribers, alternating between two instances; the
    last `slow` of them stop reading once joined."""

    def __init__(
        self,
        urls: list[str],
        protocol: str,
        room: str,
        headers: list[dict[str, str]],
        slow: int,
    ) -> None:
        super().__init__("subscribe", urls, [protocol, room, str(len(headers)), str(slow)], headers)

    async def start(self) -> None:
        """The measured span begins: wsload counts its CPU and wall time from here."""
        await self._wsload.command("start")

    async def finish(self, last_seq: int, deadline: float) -> dict[str, Any]:
        """Waits until every reader has message `last_seq`, or `deadline` seconds pass;
        returns wsload's figures."""
        await self._wsload.command(f"finish {last_seq} {int(deadline * 1000)}")
        return await self._wsload.figures(deadline + 60)

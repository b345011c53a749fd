"""`wsload storm`: the recovery storm's subscribers (bench/recovery_storm.py), compiled.

Each subscriber joins the room on instance A; when its socket on A closes it reconnects to
instance B at once, on wsload's own epoll loop (no command from here starts it), and joins
with `since`. This side only marks the span and collects the figures (storm.c says how each
is counted).
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

from bench.loadgen import address, build, header_lines

SET_UP_TIMEOUT_S = 120.0


class Storm:
    """The subscribers of one room, first on `urls[0]` (A), then on `urls[1]` (B)."""

    def __init__(self, urls: list[str], room: str, headers: list[dict[str, str]]) -> None:
        (host, port_a, path), (_, port_b, _) = address(urls[0]), address(urls[1])
        self._argv = [host, port_a, port_b, path, room, str(len(headers))]
        self._headers = headers
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Storm:
        """Returns once every subscriber has joined on A."""
        self._process = process = await asyncio.create_subprocess_exec(
            str(build()), "storm", *self._argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write(header_lines(self._headers))
        await process.stdin.drain()
        await self._expect(b"ready\n", SET_UP_TIMEOUT_S)
        return self

    async def _expect(self, answer: bytes, within: float) -> None:
        line = await self._line(within)
        if line != answer:
            raise RuntimeError(f"wsload storm answered {line!r}, not {answer!r}")

    async def _line(self, within: float) -> bytes:
        assert self._process is not None
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"wsload storm exited with {await self._process.wait()}")
        return line

    async def _command(self, line: str) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(line.encode() + b"\n")
        await self._process.stdin.drain()

    async def start(self) -> None:
        """wsload counts its CPU from here (answered before this returns)."""
        await self._command("start")
        await self._expect(b"started\n", 10)

    async def killed(self, at_ns: int, deadline: float) -> float:
        """A was killed at `at_ns` (time.monotonic_ns()): the figures count from it. Returns,
        once every subscriber recovered or ended, or `deadline` seconds passed, the CPU
        seconds wsload used since `start`."""
        await self._command(f"killed {at_ns} {int(deadline * 1000)}")
        figures = json.loads(await self._line(deadline + 60))
        return float(figures["storm_cpu_s"])

    async def finish(self, last_offset: int, deadline: float) -> dict[str, Any]:
        """Waits until every subscriber has `last_offset` or ended, or `deadline` seconds
        pass; returns wsload's figures, counted from the kill."""
        await self._command(f"finish {last_offset} {int(deadline * 1000)}")
        result: dict[str, Any] = json.loads(await self._line(deadline + 60))
        return result

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

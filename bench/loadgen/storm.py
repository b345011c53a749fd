"""`wsload storm`: the recovery storm's subscribers (bench/recovery_storm.py), compiled.

Each subscriber joins the room on instance A; when its socket on A closes it reconnects to
instance B at once, on wsload's own epoll loop (no command from here starts it), and joins
with `since`. This side only marks the span and collects the figures (storm.c says how each
is counted).
"""

from __future__ import annotations

from typing import Any

from bench.loadgen import Mode


class Storm(Mode):
    """The subscribers of one room, first on `urls[0]` (A), then on `urls[1]` (B)."""

    def __init__(self, urls: list[str], room: str, headers: list[dict[str, str]]) -> None:
        super().__init__("storm", urls, [room, str(len(headers))], headers)

    async def start(self) -> None:
        """wsload counts its CPU from here (answered before this returns)."""
        await self._wsload.command("start")
        await self._wsload.expect(b"started\n", 10)

    async def killed(self, at_ns: int, deadline: float) -> float:
        """A was killed at `at_ns` (time.monotonic_ns()): the figures count from it. Returns,
        once every subscriber recovered or ended, or `deadline` seconds passed, the CPU
        seconds wsload used since `start`."""
        await self._wsload.command(f"killed {at_ns} {int(deadline * 1000)}")
        return float((await self._wsload.figures(deadline + 60))["storm_cpu_s"])

    async def finish(self, last_offset: int, deadline: float) -> dict[str, Any]:
        """Waits until every subscriber has `last_offset` or ended, or `deadline` seconds
        pass; returns wsload's figures, counted from the kill."""
        await self._wsload.command(f"finish {last_offset} {int(deadline * 1000)}")
        return await self._wsload.figures(deadline + 60)

"""`wsload churn`: the presence churn's churners (bench/presence_churn.py), compiled.

Each churner, on a socket of its own (alternating between the two instances), joins the room
and leaves it again as fast as it is answered, reading the room's messages while joined
(churn.c says what is counted).
"""

from __future__ import annotations

from typing import Any

from bench.loadgen import Mode


class Churners(Mode):
    """`len(headers)` churners of `room`, over `urls[0]` and `urls[1]`."""

    def __init__(self, urls: list[str], room: str, headers: list[dict[str, str]]) -> None:
        super().__init__("churn", urls, [room, str(len(headers))], headers)

    async def start(self) -> None:
        """The churning begins (and wsload counts its CPU from here)."""
        await self._wsload.command("start")

    async def stop(self, deadline: float) -> dict[str, Any]:
        """Each churner finishes the join and leave it is in; one still in it after
        `deadline` seconds has failed. Returns wsload's figures."""
        await self._wsload.command(f"stop {int(deadline * 1000)}")
        return await self._wsload.figures(deadline + 60)

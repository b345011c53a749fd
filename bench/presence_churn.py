"""The presence churn of `make bench` (ours only: no other system keeps presence).

A room of `members` distinct users (the stayers, held by the compiled load generator,
`wsload subscribe`, over both instances) receives messages at a fixed rate from a publisher
on instance A, while `churners` other users, each on a socket of its own (alternating
between the instances), join the room and leave it again as fast as they are answered.
Measured: the churners' joins per second, and the stayers' message latency (p50, p99) and
losses during the churn. Every churner is a distinct user, so each join and leave changes
the room's presence in Redis (above 100 present users they publish no event:
docs/protocol.md, "Presence").

The churners are Python clients (wsload does not leave rooms); the stayers, whose latency is
the figure, are wsload's.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from bench import loadgen
from bench.recovery_storm import distinct_tokens, ws_url
from bench.scenarios import ROOM, Meter, publish
from bench.systems import Running

RATE = 5.0  # messages per second to the room: 25,000 deliveries/s to 5,000 members
DRAIN_S = 15.0  # after the last send, for the stayers to have it
CHURNERS_STOP_S = 30.0  # after the last send, for each churner to finish its join and leave


async def _churn(session: aiohttp.ClientSession, url: str, token: str, stop: asyncio.Event) -> int:
    """Joins and leaves the room until `stop`; returns how many joins were answered."""
    ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
    joins = 0
    try:
        await ws.receive_str()  # hello
        while not stop.is_set():
            for op, answer in (("join", "joined"), ("leave", "left")):
                await ws.send_str(json.dumps({"op": op, "room": ROOM}))
                while True:  # the room's messages come too while joined
                    frame = json.loads(await ws.receive_str())
                    if frame.get("type") == "error":
                        raise RuntimeError(f"churner refused: {frame}")
                    if frame.get("type") == answer:
                        break
            joins += 1
    finally:
        await ws.close()
    return joins


async def presence_churn(
    system: Running,
    session: aiohttp.ClientSession,
    *,
    members: int,
    churners: int,
    seconds: float,
) -> dict[str, Any]:
    """See the module's docstring."""
    tokens = await distinct_tokens(system, session, "member", members + churners + 1)
    headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
    audience = loadgen.Subscribers(system.urls, system.protocol, ROOM, headers[:members], 0)
    async with audience:
        publisher = system.client(session, 0)
        await publisher.connect(headers[-1])
        await publisher.join(ROOM)
        stop = asyncio.Event()
        churning = [
            asyncio.create_task(_churn(session, ws_url(system, i % 2), tokens[members + i], stop))
            for i in range(churners)
        ]
        meter = Meter(system.server_pids())
        await audience.start()
        started = time.monotonic()
        try:
            published = await publish(publisher, seconds=seconds, window=1024, rate=RATE, padding=0)
        finally:
            stop.set()
        churned = time.monotonic() - started
        _, stuck = await asyncio.wait(churning, timeout=CHURNERS_STOP_S)
        for task in stuck:
            task.cancel()  # unanswered: counted as failed below
        joins = await asyncio.gather(*churning, return_exceptions=True)
        received = await audience.finish(published.sent - 1, deadline=DRAIN_S)
        await publisher.close()
    failed = [j for j in joins if isinstance(j, BaseException)]
    return {
        "members": members,
        "churners": churners,
        "churners_failed": len(failed),
        "first_failure": repr(failed[0]) if failed else None,
        "joins": sum(j for j in joins if isinstance(j, int)),
        "joins_per_s": round(sum(j for j in joins if isinstance(j, int)) / churned, 1),
        "messages": published.sent,
        "p50_ms": received["p50_ms"],
        "p99_ms": received["p99_ms"],
        "lost": published.sent * received["readers"] - received["delivered"],
        "duplicated": received["duplicates"],
        "readers_closed": received["readers_closed"],  # by the server: why messages were lost
        "send_errors": published.send_errors,
        **meter.figures(received["cpu_s"]),
    }


def churn_targets(ours: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The target line of `make bench` (none when the run left the scenario out)."""
    if "churn" not in ours:
        return []
    churn = ours["churn"]
    lost, dup, errors = churn["lost"], churn["duplicated"], churn["send_errors"]
    return [
        ("presence churn: 0 lost or duplicated for the staying members",
         lost == dup == errors == churn["churners_failed"] == 0,
         f"lost {lost}, duplicated {dup}, send errors {errors}, "
         f"churners failed {churn['churners_failed']}"),
    ]  # fmt: skip

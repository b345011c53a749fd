"""The presence churn of `make bench` (ours only: no other system keeps presence).

A room of `members` distinct users (the stayers, held by the compiled load generator,
`wsload subscribe`, over both instances) receives messages at a fixed rate from a publisher
on instance A, while `churners` other users, each on a socket of its own (alternating
between the instances), join the room and leave it again as fast as they are answered.
Measured: the churners' joins per second, and the stayers' message latency (p50, p99) and
losses during the churn. Every churner is a distinct user, so each join and leave changes
the room's presence in Redis (above 100 present users they publish no event:
docs/protocol.md, "Presence").

Both the stayers and the churners are the compiled load generator's (`wsload subscribe` and
`wsload churn`), and both their CPU seconds count in `loadgen_cpu`.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from bench import loadgen
from bench.loadgen.churn import Churners
from bench.recovery_storm import distinct_tokens
from bench.scenarios import ROOM, Meter, publish
from bench.systems import Running

RATE = 5.0  # messages per second to the room: 25,000 deliveries/s to 5,000 members
DRAIN_S = 15.0  # after the last send, for the stayers to have it
CHURNERS_STOP_S = 30.0  # after the last send, for each churner to finish its join and leave


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
    churning = Churners(system.urls, ROOM, headers[members:-1])
    async with audience, churning:
        publisher = system.client(session, 0)
        await publisher.connect(headers[-1])
        await publisher.join(ROOM)
        meter = Meter(system.server_pids())
        await audience.start()
        await churning.start()
        started = time.monotonic()
        published = await publish(publisher, seconds=seconds, window=1024, rate=RATE, padding=0)
        churned = time.monotonic() - started
        churn = await churning.stop(CHURNERS_STOP_S)
        received = await audience.finish(published.sent - 1, deadline=DRAIN_S)
        await publisher.close()
    return {
        "members": members,
        "churners": churners,
        "churners_failed": churn["failed"],
        "first_failure": churn["first_failure"],
        "joins": churn["joins"],
        "joins_per_s": round(churn["joins"] / churned, 1),
        "messages": published.sent,
        "p50_ms": received["p50_ms"],
        "p99_ms": received["p99_ms"],
        "lost": published.sent * received["readers"] - received["delivered"],
        "duplicated": received["duplicates"],
        "readers_closed": received["readers_closed"],  # by the server: why messages were lost
        "send_errors": published.send_errors,
        **meter.figures(received["cpu_s"] + churn["cpu_s"]),
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

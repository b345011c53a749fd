"""What presence costs in a big room (`make bench-presence`): one join and one `presence`
query in a room of 10,000 present users, against the same in a room of 10, measured in Redis
(commands run, including those inside the scripts, from `INFO commandstats`; bytes in and
out, from `INFO stats`, less what the measuring itself costs) on a private redis-server.

It also shows that a big room's joins cannot storm: above `EVENTS_UP_TO` present users, a
join publishes nothing (the PUBLISH count below), so 10,000 joins cost 10,000 small scripts
and no fan-out at all.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.systems import redis_server
from common.redis import connect
from service.rooms.presence import EVENTS_UP_TO, PresenceStore

BIG, SMALL = 10_000, 10
INSTANCE = "bench-instance"


async def _stats(client: aioredis.Redis) -> tuple[dict[str, Any], dict[str, Any]]:
    commands: dict[str, Any] = await client.info("commandstats")
    stats: dict[str, Any] = await client.info("stats")
    return commands, stats


def _calls(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    counted = {}
    for key, value in after.items():
        calls = value.get("calls", 0) - before.get(key, {}).get("calls", 0)
        if calls:
            counted[key.removeprefix("cmdstat_")] = calls
    return counted


async def _measure(
    client: aioredis.Redis, action: Callable[[], Awaitable[object]]
) -> dict[str, Any]:
    """Commands and bytes one `action` costs Redis, less the cost of measuring."""

    async def nothing() -> None:
        return None

    results = []
    for step in (nothing, action):
        commands_before, stats_before = await _stats(client)
        await step()
        commands_after, stats_after = await _stats(client)
        results.append(
            (
                _calls(commands_before, commands_after),
                stats_after["total_net_input_bytes"] - stats_before["total_net_input_bytes"],
                stats_after["total_net_output_bytes"] - stats_before["total_net_output_bytes"],
            )
        )
    (base_calls, base_in, base_out), (calls, bytes_in, bytes_out) = results
    for name, count in base_calls.items():
        calls[name] = calls.get(name, 0) - count
    return {
        "commands": {name: count for name, count in sorted(calls.items()) if count},
        "bytes to Redis": bytes_in - base_in,
        "bytes from Redis": bytes_out - base_out,
    }


async def _fill(store: PresenceStore, room: str, users: int) -> float:
    started = time.perf_counter()
    for first in range(0, users, 500):
        await asyncio.gather(
            *(
                store.enter(room, INSTANCE, f"u{n:05d}", f"user{n:05d}", f"chat:room:{room}")
                for n in range(first, min(users, first + 500))
            )
        )
    return time.perf_counter() - started


async def run(redis_url: str) -> dict[str, Any]:
    client = connect(redis_url, decode=False)
    store = PresenceStore(client)
    report: dict[str, Any] = {"events published up to present users": EVENTS_UP_TO}
    try:
        for label, size in (("small", SMALL), ("big", BIG)):
            room = f"{label}-room"
            filled = await _fill(store, room, size)
            report[f"{label} ({size} present): filling, s"] = round(filled, 2)
            join = await _measure(
                client,
                lambda room=room: store.enter(
                    room, INSTANCE, "newcomer", "newcomer", f"chat:room:{room}"
                ),
            )
            report[f"{label} ({size} present): one join"] = join
            query = await _measure(client, lambda room=room: store.query(room))
            report[f"{label} ({size} present): one presence query"] = query
            count, listed = await store.query(room)
            report[f"{label} ({size} present): query answers count, listed"] = [count, len(listed)]
    finally:
        await client.aclose()
    return report


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="bench-presence-") as directory,
        redis_server(Path(directory), core=None) as redis_url,
    ):
        report = asyncio.run(run(redis_url))
    for key, value in report.items():
        print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


if __name__ == "__main__":
    main()

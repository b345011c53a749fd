"""Instance leases: a lapsed instance is cleaned up after exactly once, whoever races."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from service.instances import INSTANCES, InstanceLease, record_key


async def test_a_lapsed_instance_is_reaped_exactly_once(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        reaped: list[tuple[str, str, list[str]]] = []
        leases = [InstanceLease(redis, f"survivor{n}", lease=5.0) for n in range(4)]
        for lease in leases:

            async def reap(dead: str, values: list[str], who: str = lease.id) -> None:
                reaped.append((who, dead, values))

            lease.reaper("rooms", reap)
        dead = InstanceLease(redis, "dead", lease=5.0)
        await dead.record("rooms", "lobby")
        await dead.record("rooms", "news")
        await redis.zadd(INSTANCES, {"dead": 0})  # its lease ended long ago
        claimed = await asyncio.gather(*(lease.reap("dead") for lease in leases))
        assert sorted(claimed) == [False, False, False, True]
        assert [(dead_id, values) for _, dead_id, values in reaped] == [("dead", ["lobby", "news"])]
        assert await redis.zscore(INSTANCES, "dead") is None
        assert not await redis.exists(record_key("dead", "rooms"))
    finally:
        await redis.aclose()


async def test_an_instance_whose_lease_was_reaped_records_itself_again(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    lease = InstanceLease(redis, "stalled", lease=1.0)
    lost = asyncio.Event()

    async def on_lost() -> None:
        lost.set()

    lease.on_lost = on_lost
    try:
        await lease.start()
        await redis.zrem(INSTANCES, "stalled")  # what a reaper does after a long stall
        await asyncio.wait_for(lost.wait(), 5)
        assert await redis.zscore(INSTANCES, "stalled") is not None  # back, renewed
    finally:
        await lease.stop()
        await redis.aclose()

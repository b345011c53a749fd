"""The services' Redis client on a real local Redis Cluster."""

from __future__ import annotations

import asyncio

from common.redis import POOL_SIZE, GatedCluster, connect_to, prepare

SLOW_SCRIPT = "local n = 0 for i = 1, 20000 do n = n + i end return n"
SLOW_SCRIPT_ANSWER = 20000 * 20001 // 2


async def test_cluster_seeds_make_a_cluster_client_that_routes_by_slot(
    cluster_nodes: tuple[tuple[str, int], ...],
) -> None:
    client = connect_to("redis://unused:6379/0", cluster_nodes)
    try:
        assert isinstance(client, GatedCluster)
        keys = [f"k{n}" for n in range(50)]  # spread over the three primaries
        for key in keys:
            await client.set(key, key)
        assert [await client.get(key) for key in keys] == keys
    finally:
        await client.aclose()


async def test_the_cluster_client_queues_past_its_connections(
    cluster_nodes: tuple[tuple[str, int], ...],
) -> None:
    client = connect_to("redis://unused:6379/0", cluster_nodes)
    await prepare(client)
    try:
        # A script that keeps its node busy for a moment holds a connection while it waits,
        # so three times the pool's size are in flight together on one node. redis-py's
        # cluster client fails that (it opens no more than `max_connections`, then raises);
        # ours queues them.
        answers = await asyncio.gather(
            *(client.eval(SLOW_SCRIPT, 1, "{one}:key") for _ in range(POOL_SIZE * 3))
        )
        assert answers == [SLOW_SCRIPT_ANSWER] * (POOL_SIZE * 3)
    finally:
        await client.aclose()

"""The services' Redis client queues commands past its pool's size instead of failing them."""

from __future__ import annotations

import asyncio

from common.redis import POOL_SIZE, connect


async def test_more_commands_in_flight_than_connections_all_succeed(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        # BLPOP holds its connection for a moment, so they really are in flight together.
        answers = await asyncio.gather(
            *(client.blpop([f"empty{n}"], timeout=0.05) for n in range(POOL_SIZE * 3))
        )
        assert answers == [None] * (POOL_SIZE * 3)
    finally:
        await client.aclose()

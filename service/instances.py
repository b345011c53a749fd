"""This process's lease in Redis, and the clean-up after instances whose lease ran out.

`chat:instances` is a sorted set of instance id -> when its lease ends (milliseconds, by
Redis's clock, so no two machines' clocks are compared). Each instance renews its own lease
every `lease / 5` seconds and looks for lapsed ones every second; the first to claim a lapsed
one (`SET chat:reaping:<id> NX`, so exactly one does, and another takes over if it dies
mid-way) hands what the dead instance recorded to the reapers registered for it: sets
`chat:instance:<id>:<kind>` (the rooms it had presence in, the users it held sockets of).
An instance whose own lease was reaped (it stalled longer than the lease) is told, so it can
record itself again (`on_lost`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import cast

from common.log_throttle import ConditionLog
from common.redis import RedisClient
from service.broker.base import UNAVAILABLE

log = logging.getLogger(__name__)
_JITTER = random.Random()  # noqa: S311 - jitter; not the global generator (see common.backoff)

INSTANCES = "chat:instances"
SCAN_INTERVAL = 1.0
CLAIM_SECONDS = 30

_RENEW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if known then return 1 end
return 0
"""
"""KEYS: instances. ARGV: id, lease (ms). 1: renewed; 0: it was not there (new, or reaped)."""

_LAPSED = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)
"""

Reaper = Callable[[str, list[str]], Awaitable[None]]


def record_key(instance: str, kind: str) -> str:
    return f"chat:instance:{instance}:{kind}"


class InstanceLease:
    """This instance's lease, its records, and the reaping of lapsed ones."""

    def __init__(self, redis: RedisClient, instance_id: str, *, lease: float) -> None:
        self.id = instance_id
        self._redis = redis
        self._lease_ms = int(lease * 1000)
        self._renew_every = lease / 5
        self._renew = redis.register_script(_RENEW)
        self._lapsed = redis.register_script(_LAPSED)
        self._reapers: dict[str, Reaper] = {}
        self._recorded: dict[str, set[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.on_lost: Callable[[], Awaitable[None]] | None = None
        self.reaped = 0  # instances this one cleaned up after (for tests and logs)
        self._failures = ConditionLog(log, "reaping a lapsed instance failed; retrying")

    def reaper(self, kind: str, reap: Reaper) -> None:
        """`reap(dead_id, values)` cleans up what a dead instance recorded as `kind`."""
        self._reapers[kind] = reap

    async def record(self, kind: str, value: str) -> None:
        """Notes `value` (a room, a user) for whoever cleans up if this instance dies; before
        the state it names is written, so nothing is written that no reaper would find."""
        recorded = self._recorded.setdefault(kind, set())
        if value not in recorded:
            await self._redis.sadd(record_key(self.id, kind), value)
            recorded.add(value)

    async def record_all(self, kind: str, values: Iterable[str]) -> None:
        """`record` for several values, in one command for those not recorded yet."""
        recorded = self._recorded.setdefault(kind, set())
        new = list(dict.fromkeys(v for v in values if v not in recorded))
        if new:
            await self._redis.sadd(record_key(self.id, kind), *new)
            recorded.update(new)

    async def start(self) -> None:
        await self._renew(keys=[INSTANCES], args=[self.id, self._lease_ms])
        self._tasks = [
            asyncio.create_task(self._renewing()),
            asyncio.create_task(self._reaping()),
        ]

    async def stop(self) -> None:
        """Gives the lease back, once this instance has undone its own records."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            kinds = [record_key(self.id, kind) for kind in self._reapers]
            await self._redis.delete(*kinds)
            await self._redis.zrem(INSTANCES, self.id)
        except UNAVAILABLE:
            log.warning("could not give the instance lease back; it will lapse")

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                renewed = await self._renew(keys=[INSTANCES], args=[self.id, self._lease_ms])
            except UNAVAILABLE:
                continue  # Redis is away; the next renewal tries again
            if not renewed:
                log.error("this instance's lease lapsed and was reaped; recording it again")
                self._recorded.clear()
                if self.on_lost is not None:
                    await self.on_lost()

    async def _reaping(self) -> None:
        while True:
            await asyncio.sleep(SCAN_INTERVAL * _JITTER.uniform(0.8, 1.2))
            try:
                for dead in await self._lapsed(keys=[INSTANCES]):
                    dead_id = dead.decode() if isinstance(dead, bytes) else str(dead)
                    if dead_id != self.id:
                        await self.reap(dead_id)
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE:
                continue
            except Exception as exc:  # once a minute at most, whatever keeps failing
                self._failures.hit(error=repr(exc))

    async def reap(self, dead: str) -> bool:
        """Cleans up after `dead` if this instance is the first to claim it."""
        claim = f"chat:reaping:{dead}"
        if not await self._redis.set(claim, self.id, nx=True, ex=CLAIM_SECONDS):
            return False
        for kind, reap in self._reapers.items():
            key = record_key(dead, kind)
            values = cast(list[bytes | str], await self._redis.smembers(key))
            await reap(dead, sorted(v.decode() if isinstance(v, bytes) else v for v in values))
            await self._redis.delete(key)
        await self._redis.zrem(INSTANCES, dead)
        # The claim is left to expire: one who read the lapsed lease before the ZREM above
        # must still find it claimed (ids are never reused, so it blocks nothing else).
        self.reaped += 1
        log.info("cleaned up after a lapsed instance", extra={"instance": dead})
        return True

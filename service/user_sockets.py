"""`CHAT_MAX_CONNECTIONS_PER_USER` across every instance together, in Redis.

`chat:{user:U}:sockets` is a hash of instance id -> the user's sockets there. Admission adds
one only while the sum over instances is under the cap, in one script, so two instances
admitting the same user's sockets at once cannot both pass the last slot. Each instance
records the users it holds sockets of against its lease, so a killed instance's sockets stop
counting when its lease lapses and another instance reaps it (within the lease and a scan).
"""

from __future__ import annotations

import asyncio

from common.backoff import until_done
from common.redis import RedisClient
from service.broker.base import UNAVAILABLE
from service.instances import InstanceLease

USERS = "users"  # the lease's record of the users this instance holds sockets of

_ADMIT = """
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(n) end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""
"""KEYS: the user's sockets. ARGV: this instance, the cap. 1 admitted, 0 at the cap."""

_RELEASE = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
"""


def sockets_key(user_id: str) -> str:
    return f"chat:{{user:{user_id}}}:sockets"


class UserSockets:
    """Admits and releases a user's sockets against the cluster-wide cap."""

    def __init__(self, redis: RedisClient, lease: InstanceLease, cap: int) -> None:
        self._redis = redis
        self._lease = lease
        self._cap = cap
        self._admit = redis.register_script(_ADMIT)
        self._release = redis.register_script(_RELEASE)
        self._pending: set[asyncio.Task[None]] = set()
        lease.reaper(USERS, self._reap)

    async def admit(self, user_id: str) -> bool:
        """Whether the user may open one more socket (then it counts until `release`).
        Raises what Redis raises: the caller refuses then (never fails open)."""
        await self._lease.record(USERS, user_id)
        return bool(
            await self._admit(keys=[sockets_key(user_id)], args=[self._lease.id, self._cap])
        )

    def release(self, user_id: str) -> None:
        """One socket of the user fewer (in the background; retried while Redis is away)."""
        task = asyncio.create_task(
            until_done(
                lambda: self._release(keys=[sockets_key(user_id)], args=[self._lease.id]),
                UNAVAILABLE,
                "releasing a socket from the per-user count",
            )
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        if self._pending:
            _, late = await asyncio.wait(self._pending, timeout=5.0)
            for task in late:
                task.cancel()

    async def _reap(self, dead: str, users: list[str]) -> None:
        for user_id in users:
            await self._redis.hdel(sockets_key(user_id), dead)

"""`CHAT_MAX_CONNECTIONS_PER_USER` across every instance together, in Redis.

`chat:{user:U}:sockets` is a hash of instance id -> the user's sockets there. Admission adds
one only while the sum over instances is under the cap, in one script, so two instances
admitting the same user's sockets at once cannot both pass the last slot. Each instance
records the users it holds sockets of against its lease, so a killed instance's sockets stop
counting when its lease lapses and another instance reaps it (within the lease and a scan).

A burst of handshakes would cost a round trip (and redis-py's per-command overhead) each, on
the chat service's one core: admissions asked in the same event-loop turn (or while
`ADMITS_IN_FLIGHT` batches are on their way) share one pipeline, after one `SADD` recording
the users new to the lease; each still runs the script on its own user's key (the keys are
in different cluster slots) and gets its own answer. Nothing fails open: an error is its own
caller's, and a batch that cannot reach Redis refuses every handshake in it. Releases queue
the same way: the closed sockets' releases go out together, one batch at a time, and what
Redis did not take is sent again with backoff until it does (never dropped while the
process lives).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from common.backoff import Backoff
from common.coalesce import Coalescer
from common.redis import RedisClient, execute_together
from service.broker.base import UNAVAILABLE
from service.instances import InstanceLease

log = logging.getLogger(__name__)

USERS = "users"  # the lease's record of the users this instance holds sockets of
ADMITS_PER_BATCH = 128
ADMITS_IN_FLIGHT = 4
RELEASES_PER_BATCH = 512

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
        self._admits: Coalescer[str, bool] = Coalescer(
            self._admit_all,
            max_batch=ADMITS_PER_BATCH,
            max_in_flight=ADMITS_IN_FLIGHT,
            abandoned=self._abandoned,
        )
        self._releases: list[str] = []
        self._releasing: asyncio.Task[None] | None = None
        self._sending = 0  # releases in the batch on its way
        lease.reaper(USERS, self._reap)

    async def admit(self, user_id: str) -> bool:
        """Whether the user may open one more socket (then it counts until `release`).
        Raises what Redis raises: the caller refuses then (never fails open)."""
        return await self._admits(user_id)

    def release(self, user_id: str) -> None:
        """One socket of the user fewer (in the background; retried while Redis is away)."""
        self._releases.append(user_id)
        if self._releasing is None:
            self._releasing = asyncio.create_task(self._release_all())

    @property
    def unreleased(self) -> int:
        """Releases Redis has not taken yet."""
        return len(self._releases) + self._sending

    async def released(self) -> None:
        """Returns once Redis has taken every release asked for so far (however long)."""
        while self._releasing is not None:
            await asyncio.shield(self._releasing)

    async def drain(self) -> None:
        """At shutdown: the admissions on their way answered, the releases sent (for up to
        5 seconds; a lease that lapses undoes the rest)."""
        await self._admits.drain()
        if self._releasing is not None:
            done, _ = await asyncio.wait({self._releasing}, timeout=5.0)
            if not done:
                self._releasing.cancel()

    async def _admit_all(self, users: Sequence[str]) -> list[bool | Exception]:
        # Recorded before the counts are written, so a reaper finds every count we write.
        await self._lease.record_all(USERS, users)
        key, cap = self._lease.id, self._cap

        def queue(pipe: Any) -> None:
            for user_id in users:
                pipe.eval(_ADMIT, 1, sockets_key(user_id), key, cap)

        replies = await execute_together(self._redis, queue)
        return [r if isinstance(r, Exception) else bool(r) for r in replies]

    def _abandoned(self, user_id: str, admitted: bool) -> None:
        # Its handshake was cancelled while the batch was on its way: give the slot back.
        if admitted:
            self.release(user_id)

    async def _release_all(self) -> None:
        """Sends the queued releases, a batch at a time, until none is left; a batch Redis
        did not take (or the part of it) is queued again and retried with backoff."""
        backoff = Backoff(base=0.2, cap=5.0)
        try:
            while self._releases:
                batch = self._releases[:RELEASES_PER_BATCH]
                del self._releases[:RELEASES_PER_BATCH]
                self._sending = len(batch)
                try:
                    failed = await self._send_releases(batch)
                finally:
                    self._sending = 0
                if not failed:
                    backoff.reset()
                    continue
                self._releases[:0] = failed
                if backoff.attempts == 0:
                    log.warning("releasing sockets from the per-user count failed; retrying")
                await asyncio.sleep(backoff.next())
        finally:
            self._releasing = None

    async def _send_releases(self, batch: list[str]) -> list[str]:
        """The releases of `batch` to send again (Redis was away)."""
        lease = self._lease.id

        def queue(pipe: Any) -> None:
            for user_id in batch:
                pipe.eval(_RELEASE, 1, sockets_key(user_id), lease)

        try:
            replies = await execute_together(self._redis, queue)
        except UNAVAILABLE:
            return batch
        except Exception as exc:  # not transient either; the loop must go on for the rest
            log.error("a batch of socket releases was refused", extra={"error": repr(exc)})
            return []
        failed = []
        for user_id, reply in zip(batch, replies, strict=True):
            if isinstance(reply, UNAVAILABLE):
                failed.append(user_id)
            elif isinstance(reply, Exception):  # not transient: sending it again won't help
                log.error("a socket's release was refused", extra={"error": repr(reply)})
        return failed

    async def _reap(self, dead: str, users: list[str]) -> None:
        for user_id in users:
            await self._redis.hdel(sockets_key(user_id), dead)

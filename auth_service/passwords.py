"""Argon2id password hashing, run on worker threads so the event loop never stalls."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from auth_service.errors import Unavailable, too_many


class PasswordService:
    """Hashes and verifies passwords off the loop, with a bound on work waiting for a thread.

    Past the bound a request is refused (503) rather than queued: hashing is deliberately
    expensive, and an unbounded queue would let a flood of logins eat memory and latency.
    The pool is shared fairly: each piece of work names its owners (an account, an address)
    and no owner may hold more than a quarter of the bound (429 beyond), so one account or
    one address cannot starve everybody else's logins.
    """

    def __init__(
        self,
        *,
        time_cost: int,
        memory_kib: int,
        parallelism: int,
        workers: int,
        max_pending: int,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._slots = asyncio.Semaphore(max_pending)
        self._share = max(1, max_pending // 4)
        self._held: Counter[str] = Counter()
        self._queued = 0  # holding a slot: hashing, or waiting for a thread
        self._dummy_hash = self._hasher.hash("timing-equaliser-not-a-password")

    async def hash(self, password: str, *, owners: Iterable[str] = ()) -> str:
        async with self._slot(owners):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._hasher.hash, password)

    async def verify(
        self, stored_hash: str | None, password: str, *, owners: Iterable[str] = ()
    ) -> bool:
        """True when the password matches; an unknown user (no hash) costs the same time."""
        async with self._slot(owners):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, self._verify_sync, stored_hash, password
            )

    def queued(self) -> int:
        """Hashes and checks running or waiting for a thread now."""
        return self._queued

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    def _verify_sync(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and (
                stored_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    @asynccontextmanager
    async def _slot(self, owners: Iterable[str]) -> AsyncIterator[None]:
        names = tuple(owners)
        if any(self._held[name] >= self._share for name in names):
            raise too_many(1)
        if self._slots.locked():
            raise Unavailable("too many password checks in progress", retry_after=1)
        self._held.update(names)
        self._queued += 1
        try:
            async with self._slots:
                yield
        finally:
            self._queued -= 1
            self._held.subtract(names)
            for name in names:
                if self._held[name] <= 0:
                    del self._held[name]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

"""Argon2id password hashing, run on worker threads so the event loop never stalls."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from auth_service.errors import Unavailable


class PasswordService:
    """Hashes and verifies passwords off the loop, with a bound on work waiting for a thread.

    Past the bound a request is refused (503) rather than queued: hashing is deliberately
    expensive, and an unbounded queue would let a flood of logins eat memory and latency.
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
        self._dummy_hash = self._hasher.hash("timing-equaliser-not-a-password")

    async def hash(self, password: str) -> str:
        async with self._slot():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when the password matches; an unknown user (no hash) costs the same time."""
        async with self._slot():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, self._verify_sync, stored_hash, password
            )

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    def _verify_sync(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and (
                stored_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _slot(self) -> asyncio.Semaphore:
        if self._slots.locked():
            raise Unavailable("too many password checks in progress", retry_after=1)
        return self._slots

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

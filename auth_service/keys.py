"""The signing key ring: Ed25519 keys identified by `kid`, shared by every auth replica.

Keys come from PEM files named in `AUTH_SIGNING_KEY_FILES` (the first one signs, all verify),
or else live in Redis: the first replica to start generates one, every replica loads the same
ring, and `python -m auth_service keys rotate` adds a new signing key while the old ones keep
verifying until they are retired.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common import revocation_events
from common.redis import REDIS_ERRORS, RedisClient

log = logging.getLogger(__name__)

# One hash tag, so the scripts that change both keys run in one cluster slot.
KEYS_HASH = "auth:{keys}"
ACTIVE_KID = "auth:{keys}:active"
LEGACY_KEYS_HASH, LEGACY_ACTIVE_KID = "auth:keys", "auth:keys:active"  # before the tag
# How long a replica trusts its copy of the ring before re-reading it, and how often an
# unknown `kid` may trigger an early re-read (so garbage kids cannot hammer Redis).
REFRESH_SECONDS = 30.0
_ENSURE_ACTIVE = """
local active = redis.call('GET', KEYS[2])
if active and redis.call('HEXISTS', KEYS[1], active) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""
UNKNOWN_KID_RELOAD_SECONDS = 1.0


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey

    @functools.cached_property
    def public(self) -> Ed25519PublicKey:  # derived once: every verification needs it
        return self.private.public_key()

    def jwk(self) -> dict[str, str]:
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }


def _pem(private: Ed25519PrivateKey) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_private_key(pem: str | bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; `ValueError` for anything else."""
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("signing keys must be Ed25519 private keys")
    return key


def kid_of(private: Ed25519PrivateKey) -> str:
    """A key id derived from the public key, so the same key always has the same kid."""
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:16]


class KeyRing:
    """The keys this replica signs and verifies with, refreshed from Redis when stale."""

    def __init__(self, redis: RedisClient | None, files: tuple[str, ...] = ()) -> None:
        self._redis = redis
        self._files = files
        self._keys: dict[str, SigningKey] = {}
        self._active: str = ""
        self._loaded_at = 0.0
        self._unknown_reload_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._migrated = False
        if files:
            # Files are read once, at construction: rotating them is a configuration change.
            loaded = [load_private_key(Path(path).read_bytes()) for path in files]
            self._keys = {kid_of(k): SigningKey(kid_of(k), k) for k in loaded}
            self._active = kid_of(loaded[0])

    async def load(self) -> None:
        if not self._files:
            if not self._migrated:  # once per process; periodic re-reads need not ask
                await self._migrate_legacy_keys()
                self._migrated = True
            await self._load_from_redis()
            self._loaded_at = time.monotonic()

    async def _migrate_legacy_keys(self) -> None:
        """Keys stored under their names from before the hash tag are copied across once
        (key by key, so it also works on a cluster); tokens they signed stay valid."""
        assert self._redis is not None
        if await self._redis.exists(KEYS_HASH):
            return
        legacy = cast(dict[str, str], await self._redis.hgetall(LEGACY_KEYS_HASH))
        if not legacy:
            return
        await self._redis.hset(KEYS_HASH, mapping=dict(legacy.items()))
        active = await self._redis.get(LEGACY_ACTIVE_KID)
        if active is not None:
            await self._redis.set(ACTIVE_KID, active, nx=True)
        log.info("moved the signing keys to their hash-tagged names", extra={"keys": len(legacy)})

    async def _load_from_redis(self) -> None:
        assert self._redis is not None
        stored = cast(dict[str, str], await self._redis.hgetall(KEYS_HASH))
        active = await self._redis.get(ACTIVE_KID)
        if active not in stored:
            # First start, or the active key was lost: propose one. The script installs it
            # only if there is still no usable active key, so racing replicas agree on one.
            fresh = Ed25519PrivateKey.generate()
            kid = kid_of(fresh)
            ensure = self._redis.register_script(_ENSURE_ACTIVE)
            if await ensure(keys=[KEYS_HASH, ACTIVE_KID], args=[kid, _pem(fresh)]):
                log.info("generated a signing key", extra={"kid": kid})
            stored = cast(dict[str, str], await self._redis.hgetall(KEYS_HASH))
            active = await self._redis.get(ACTIVE_KID)
        self._keys = {kid: SigningKey(kid, load_private_key(pem)) for kid, pem in stored.items()}
        self._active = str(active)

    async def _fresh(self) -> None:
        if self._files or time.monotonic() - self._loaded_at <= REFRESH_SECONDS:
            return
        # One re-read at a time: concurrent requests share it and its outcome, so a slow or
        # dead Redis costs them one wait, not one each. Shielded: a request that goes away
        # must not cancel the re-read the others are waiting for.
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)
        await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        try:
            await self.load()
        except REDIS_ERRORS:
            if not self._keys:
                raise
            # A periodic re-read failed: the keys we hold are still the right ones to use.
            log.warning("could not refresh signing keys from redis; using cached keys")

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing = None
        if not task.cancelled():
            task.exception()  # marks it retrieved even when every waiter has gone away

    async def signing_key(self) -> SigningKey:
        await self._fresh()
        return self._keys[self._active]

    async def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        await self._fresh()
        key = self._keys.get(kid)
        now = time.monotonic()
        if (
            key is None
            and not self._files
            and now - self._unknown_reload_at > UNKNOWN_KID_RELOAD_SECONDS
        ):
            self._unknown_reload_at = now
            await self.load()
            key = self._keys.get(kid)
        return None if key is None else key.public

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        await self._fresh()
        return {"keys": [key.jwk() for key in self._keys.values()]}


async def rotate(redis: RedisClient) -> str:
    """Add a new signing key to the shared ring and make it the one that signs."""
    fresh = Ed25519PrivateKey.generate()
    kid = kid_of(fresh)
    await redis.hset(KEYS_HASH, kid, _pem(fresh))
    await redis.set(ACTIVE_KID, kid)
    return kid


# KEYS: the ring, the active kid. ARGV: the kid, the revocation channel, the event. Removing
# the key and announcing it are one step: a retirement cannot happen unannounced.
_RETIRE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then return -1 end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


async def retire(redis: RedisClient, kid: str) -> bool:
    """Remove a key that no longer signs, and announce it (a `kid` revocation event, so chat
    instances close what it signed): its tokens stop being active at once, everywhere.
    False when there is no such key."""
    event = revocation_events.encode("kid", kid, "key_retired")
    retired = await redis.register_script(_RETIRE)(
        keys=[KEYS_HASH, ACTIVE_KID], args=[kid, revocation_events.CHANNEL, event]
    )
    if retired == -1:
        raise ValueError("the active signing key cannot be retired; rotate first")
    if retired:
        log.info("revoked", extra={"kind": "kid", "id": kid, "reason": "key_retired"})
    return bool(retired)

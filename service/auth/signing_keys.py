"""The auth service's public signing keys, to refuse forged or expired access tokens locally.

Introspection stays the authority on every credential; this is only a filter in front of it,
so that a flood of made-up bearer values costs a signature check each instead of a request
to the auth service. A token is refused here only when it provably is not a live token of
ours: an unreadable header or payload, another algorithm or type, a key the auth service
did not publish although the token says it was issued well before we read the published
keys, a signature that does not verify, or an `exp` long past. When the keys cannot be
known (the auth service is down), nothing is refused here and the look-up decides.

The signature itself is checked only while `RefusalAlarm` says a flood of made-up tokens is
under way (`check`); otherwise the cheap checks alone (`plausible`) stand in front of the
look-up, which verifies the signature anyway.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from typing import Any, TypeGuard

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

ALGORITHM, TYP = "EdDSA", "at+jwt"
REFRESH_EVERY = 300.0  # seconds before a copy of the key set is re-read in the background
MIN_REFRESH_GAP = 5.0  # an unknown kid may make it re-read at most this often
# How long before our read of the keys a token must say it was issued for a key missing
# from them to prove it forged. A key is in Redis before anything is signed with it, but an
# auth replica may serve a copy of the ring up to 30 s old (its REFRESH_SECONDS), and clocks
# may differ by seconds: a token newer than this is left to the look-up.
PUBLICATION_MARGIN = 45.0
# Seconds past `exp` before a token is refused here: the auth service allows AUTH_LEEWAY
# (10 s by default), and a socket's expiry has its own grace; the look-up decides in between.
EXPIRY_MARGIN = 60.0


def _decode(segment: str) -> Any:
    """A base64url JSON segment of a JWT; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise ValueError("not a JSON segment") from exc


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _public_key(jwk: Any) -> tuple[str, Ed25519PublicKey] | None:
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        return None
    kid, x = jwk.get("kid"), jwk.get("x")
    if not isinstance(kid, str) or not isinstance(x, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        return kid, Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        return None


class SigningKeys:
    """A copy of `/.well-known/jwks.json`: read at start, again every `REFRESH_EVERY`
    seconds (in the background) and when a token names a key it lacks (at most every
    `MIN_REFRESH_GAP` seconds, one read at a time); a key is dropped the moment its
    retirement is announced."""

    def __init__(self, session: aiohttp.ClientSession, *, auth_url: str, timeout: float) -> None:
        self._session = session
        self._url = f"{auth_url}/.well-known/jwks.json"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = -REFRESH_EVERY  # monotonic; never
        self._read_started = 0.0  # wall clock at the start of the last successful read
        self._tried_at = -MIN_REFRESH_GAP
        self._reading: asyncio.Task[bool] | None = None
        self._failing = False

    @property
    def known(self) -> bool:
        """Whether a key set was read at all (until then nothing is refused here)."""
        return self._fetched_at >= 0

    async def start(self) -> None:
        await self._read()

    def retire(self, kid: str) -> None:
        self._keys.pop(kid, None)

    async def check(self, token: str) -> bool | None:
        """False: not a live access token of ours. True: signed by a published key and not
        expired. None: cannot tell here (no key set yet); ask the auth service."""
        parsed = self._parse(token)
        if parsed is None:
            return False
        signed, sig, kid, iat = parsed
        self._refresh_if_stale()
        key = self._keys.get(kid)
        if key is None:
            if self._issued_before_our_copy(iat):
                return False  # issued well before our copy was read, by a key not in it
            await self._read_for_unknown_kid()
            key = self._keys.get(kid)
            if key is None:
                # Forged, or a key too new for the copy we could read: the look-up decides.
                return False if self._issued_before_our_copy(iat) else None
        try:
            key.verify(sig, signed)
        except InvalidSignature:
            return False
        return True

    def plausible(self, token: str) -> bool | None:
        """`check` without the signature (the dear part) and without re-reading the keys:
        False when the cheap checks prove it is not a live token of ours, None otherwise
        (the look-up decides). For when no flood of made-up tokens is under way
        (`RefusalAlarm`)."""
        parsed = self._parse(token)
        if parsed is None:
            return False
        _, _, kid, iat = parsed
        if kid not in self._keys and self._issued_before_our_copy(iat):
            return False
        return None

    @staticmethod
    def _parse(token: str) -> tuple[bytes, bytes, str, float] | None:
        """The signed part, signature, kid and iat of a token of the right shape, header and
        unexpired `exp`; None for anything else."""
        head, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        try:
            header, claims = _decode(head), _decode(payload)
            sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return None
        kid, exp, iat = header.get("kid"), claims.get("exp"), claims.get("iat")
        if header.get("alg") != ALGORITHM or header.get("typ") != TYP or not isinstance(kid, str):
            return None
        if not _number(exp) or not _number(iat) or exp <= time.time() - EXPIRY_MARGIN:
            return None
        return f"{head}.{payload}".encode(), sig, kid, iat

    def _issued_before_our_copy(self, iat: float) -> bool:
        return self.known and iat < self._read_started - PUBLICATION_MARGIN

    def _refresh_if_stale(self) -> None:
        if time.monotonic() - self._fetched_at > REFRESH_EVERY and self._reading is None:
            self._start_reading()

    async def _read_for_unknown_kid(self) -> bool:
        """Re-reads the key set for a kid we lack; False when that is not allowed now (read
        too recently) or failed, True once a fresh set is in."""
        if self._reading is None:
            if time.monotonic() - self._tried_at < MIN_REFRESH_GAP:
                return False
            self._start_reading()
        assert self._reading is not None
        return await asyncio.shield(self._reading)

    def _start_reading(self) -> None:
        self._reading = asyncio.create_task(self._read())
        self._reading.add_done_callback(self._done_reading)

    def _done_reading(self, task: asyncio.Task[bool]) -> None:
        self._reading = None
        if not task.cancelled():
            task.exception()  # retrieved: a failure was logged by _read

    async def _read(self) -> bool:
        self._tried_at = time.monotonic()
        started = time.time()
        try:
            async with self._session.get(self._url, timeout=self._timeout) as response:
                if response.status != 200:
                    raise ValueError(f"jwks answered {response.status}")
                document = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if not self._failing:
                log.warning("cannot read the signing keys", extra={"error": repr(exc)})
                self._failing = True
            return False
        keys = document.get("keys") if isinstance(document, dict) else None
        parsed = [_public_key(jwk) for jwk in keys] if isinstance(keys, list) else []
        self._keys = dict(key for key in parsed if key is not None)
        self._fetched_at = time.monotonic()
        self._read_started = started
        if self._failing:
            log.info("signing keys readable again")
            self._failing = False
        return True

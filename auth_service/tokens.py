"""Access tokens: signed JWTs (refresh tokens are `auth_service/refresh.py`).

This is the only module that imports `jwt` (to sign; verification is written out here, see
`AccessTokens.verify`). Access tokens are EdDSA JWTs with header `typ: at+jwt` and `kid`;
verification pins the algorithm and requires every claim we issue.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature

from auth_service.keys import KeyRing
from common.credentials import looks_like_jwt

ACCESS_TYP = "at+jwt"
ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "scope", "iat", "exp", "jti", "client_id"]


class InvalidToken(Exception):
    """The presented access token is not one this service issued and still honours."""


class AccessTokens:
    """Issues and verifies access tokens against the shared key ring."""

    def __init__(
        self, keyring: KeyRing, *, issuer: str, audience: str, ttl: int, leeway: int
    ) -> None:
        self._keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway

    async def sign(self, claims: dict[str, Any], *, typ: str = ACCESS_TYP) -> str:
        key = await self._keyring.signing_key()
        return jwt.encode(
            claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": typ}
        )

    async def issue(
        self, *, sub: str, username: str | None, scope: str, client_id: str, sid: str | None
    ) -> tuple[str, dict[str, Any]]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "username": username,
            "scope": scope,
            "client_id": client_id,
            "iat": now,
            "exp": now + self.ttl,
            "jti": secrets.token_hex(16),
            "sid": sid,
        }
        return await self.sign(claims), claims

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; `InvalidToken` for anything we did not issue or no longer accept.

        Written out rather than `jwt.decode`, which costs as much again as the signature
        itself on the introspection path, with pyjwt's checks for the options we use: the
        algorithm pinned, every claim we issue required (present and not null), `iat` and
        `nbf` not in the future and `exp` not past (each with the leeway, compared as
        pyjwt does, through `int()`), `iss` equal, `aud` equal or listing our audience.
        """
        if not looks_like_jwt(token):
            raise InvalidToken("not a JWT")
        head, payload, signature = token.split(".")
        try:
            header = json.loads(_b64(head))
        except (ValueError, RecursionError) as exc:  # binascii.Error is a ValueError
            raise InvalidToken("unreadable header") from exc
        if not isinstance(header, dict):
            raise InvalidToken("unreadable header")
        if header.get("alg") != ALGORITHM or header.get("typ") != ACCESS_TYP:
            raise InvalidToken("wrong alg or typ")
        kid = header.get("kid")
        key = await self._keyring.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown kid")
        try:
            key.verify(_b64(signature), f"{head}.{payload}".encode())
            claims = json.loads(_b64(payload))
        except (InvalidSignature, ValueError, RecursionError) as exc:
            raise InvalidToken("bad signature or payload") from exc
        if not isinstance(claims, dict):
            raise InvalidToken("the payload is not an object")
        self._check_claims(claims)
        claims["kid"] = kid  # which key signed it: retiring that key ends the token
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        if any(claims.get(name) is None for name in REQUIRED_CLAIMS):
            raise InvalidToken("a required claim is missing")
        if not all(isinstance(claims[name], str) for name in ("sub", "scope", "jti", "client_id")):
            raise InvalidToken("malformed claims")
        # pyjwt compares times through int(), which accepts "9999999999": insist on numbers.
        times = {name: claims[name] for name in ("exp", "iat", "nbf") if name in claims}
        if not all(_is_number(value) for value in times.values()):
            raise InvalidToken("non-numeric time claim")
        now = time.time()
        if int(times["iat"]) > now + self.leeway or int(times.get("nbf", 0)) > now + self.leeway:
            raise InvalidToken("not yet valid")
        if int(times["exp"]) <= now - self.leeway:
            raise InvalidToken("expired")
        if claims["iss"] != self.issuer:
            raise InvalidToken("wrong issuer")
        audience = claims["aud"]
        if isinstance(audience, str):
            audience = [audience]
        if not isinstance(audience, list) or not all(isinstance(a, str) for a in audience):
            raise InvalidToken("malformed audience")
        if self.audience not in audience:
            raise InvalidToken("wrong audience")
        # We never issue a longer lifetime: a token that claims one was not made by us, or
        # was made with a leaked key; either way it must not live until its own `exp`.
        try:
            lifetime = float(claims["exp"]) - float(claims["iat"])
        except OverflowError:  # an integer beyond any float: no lifetime we issue
            raise InvalidToken("lifetime longer than the service issues") from None
        if lifetime > self.ttl + self.leeway:
            raise InvalidToken("lifetime longer than the service issues")


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _is_number(value: object) -> bool:
    """An int, or a finite float (int() of which cannot fail)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)

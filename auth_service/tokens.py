"""Access tokens: signed JWTs (refresh tokens are `auth_service/refresh.py`).

This is the only module that imports `jwt`. Access tokens are EdDSA JWTs with header
`typ: at+jwt` and `kid`; verification pins the algorithm and requires every claim we issue.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

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
        """The token's claims; `InvalidToken` for anything we did not issue or no longer accept."""
        if not looks_like_jwt(token):
            raise InvalidToken("not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("unreadable header") from exc
        if header.get("alg") != ALGORITHM or header.get("typ") != ACCESS_TYP:
            raise InvalidToken("wrong alg or typ")
        kid = header.get("kid")
        key = await self._keyring.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown kid")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        if not all(isinstance(claims[name], str) for name in ("sub", "scope", "jti", "client_id")):
            raise InvalidToken("malformed claims")
        # pyjwt compares times through int(), which accepts "9999999999": insist on numbers.
        if not all(_is_number(claims[name]) for name in ("exp", "iat", "nbf") if name in claims):
            raise InvalidToken("non-numeric time claim")
        # We never issue a longer lifetime: a token that claims one was not made by us, or
        # was made with a leaked key; either way it must not live until its own `exp`.
        if claims["exp"] - claims["iat"] > self.ttl + self.leeway:
            raise InvalidToken("lifetime longer than the service issues")
        claims["kid"] = kid  # which key signed it: retiring that key ends the token
        return claims


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

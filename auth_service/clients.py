"""Registered confidential clients and their authentication (RFC 6749 §2.3.1)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from multidict import MultiDictProxy

from auth_service.errors import invalid_client, invalid_request
from auth_service.settings import PUBLIC_CLIENT
from common.credentials import basic_credentials

__all__ = ["PUBLIC_CLIENT", "ClientRegistry"]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class ClientRegistry:
    """Knows the configured clients and checks their credentials in constant time."""

    def __init__(self, clients: Mapping[str, str]) -> None:
        self._digests = {client_id: _digest(secret) for client_id, secret in clients.items()}
        # Compared against when the id is unknown, so timing does not reveal which ids exist.
        self._dummy = _digest("no-such-client")

    def known(self, client_id: str) -> bool:
        return client_id in self._digests

    def check(self, client_id: str, secret: str) -> bool:
        expected = self._digests.get(client_id, self._dummy)
        matches = hmac.compare_digest(expected, _digest(secret))
        return matches and client_id in self._digests

    def authenticate(
        self, authorization: str | None, form: MultiDictProxy[str] | None = None
    ) -> str | None:
        """The authenticated client id; None when no client credentials were presented.

        Presented-but-wrong credentials raise `invalid_client` (401): they never fall back
        to acting as an unauthenticated caller.
        """
        body_id = form.get("client_id") if form is not None else None
        body_secret = form.get("client_secret") if form is not None else None
        if authorization is not None and authorization[:6].lower() == "basic ":
            if body_secret is not None:
                raise invalid_request("use one client authentication method, not two")
            client_id, secret = _parse_basic(authorization[6:])
        elif body_secret is not None:
            if not body_id:
                raise invalid_client()
            client_id, secret = body_id, body_secret
        else:
            if body_id is not None and body_id != PUBLIC_CLIENT:
                # A confidential client must prove it; naming one is not enough.
                raise invalid_client()
            return None
        if len(client_id) > 256 or len(secret) > 1024 or not self.check(client_id, secret):
            raise invalid_client()
        return client_id


def _parse_basic(encoded: str) -> tuple[str, str]:
    pair = basic_credentials(encoded)
    if pair is None:
        raise invalid_client("malformed Basic credentials")
    return pair

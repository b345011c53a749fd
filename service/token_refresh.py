"""A live socket's credential replaced by a new one of the same user, whatever protocol asked
(the native `refresh` frame, Centrifugo's `refresh` command): the new token is introspected
like every credential, and the socket then lives until it expires."""

from __future__ import annotations

from enum import Enum

from service.auth.chain import CredentialChecker
from service.auth.identity import Identity
from service.connection import Connection
from service.errors import Refusal, Refused
from service.registry import Sockets


class RefreshFailure(Enum):
    """Why a refresh was refused; each protocol says it in its own words."""

    UNAVAILABLE = "unavailable"  # the auth service could not answer: try again
    BAD_TOKEN = "bad_token"  # invalid, expired, revoked, or not for chat
    WRONG_USER = "wrong_user"  # a good token, of another user


class RefreshRefused(Exception):
    """A refresh that changed nothing: the socket keeps its credential (and its expiry)."""

    def __init__(self, failure: RefreshFailure) -> None:
        super().__init__(failure.value)
        self.failure = failure


class TokenRefresh:
    """Refreshes the credential of this process's sockets."""

    def __init__(self, checker: CredentialChecker, sockets: Sockets, *, grace: float) -> None:
        self._checker = checker
        self._sockets = sockets
        self._grace = grace

    async def refresh(self, connection: Connection, token: str) -> Identity:
        """The socket's new identity (its expiry moved to the new token's); raises
        `RefreshRefused`."""
        try:
            identity = await self._checker.identity(token, token_type="access_token")
        except Refused as refused:
            failure = (
                RefreshFailure.UNAVAILABLE
                if refused.refusal is Refusal.AUTH_UNAVAILABLE
                else RefreshFailure.BAD_TOKEN
            )
            raise RefreshRefused(failure) from None
        if identity.user_id != connection.identity.user_id:
            raise RefreshRefused(RefreshFailure.WRONG_USER)
        self._sockets.reidentify(connection, identity)
        connection.expire_at(identity.exp + self._grace)
        return identity

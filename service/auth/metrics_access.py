"""Who may read the chat service's `/metrics` (see `common.metrics`)."""

from __future__ import annotations

from common.metrics import MetricsAccess, Verdict, same_secret
from service.auth.chain import SERVER_SCOPE, CredentialChecker
from service.errors import Refusal, Refused


class ChatMetricsAccess(MetricsAccess):
    """Who may read the chat service's `/metrics`: its own client (Basic), or a token with
    `chat:server`, introspected like every other credential."""

    def __init__(self, client_id: str, client_secret: str, checker: CredentialChecker) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._checker = checker

    def client(self, client_id: str, secret: str) -> bool:
        same_id = same_secret(client_id, self._client_id)
        return same_secret(secret, self._client_secret) and same_id

    async def bearer(self, token: str) -> Verdict:
        try:
            scopes = await self._checker.scopes(token)
        except Refused as refused:
            if refused.refusal is Refusal.AUTH_UNAVAILABLE:
                return Verdict.UNAVAILABLE
            return Verdict.BAD_TOKEN
        return Verdict.GRANTED if SERVER_SCOPE in scopes else Verdict.NOT_A_SERVER

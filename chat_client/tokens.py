"""The credential `chat-client` connects with, kept fresh while it can be.

Logged in with a password, the client holds an access token and a refresh token: the access
token is refreshed (RFC 6749 §6, rotating) when three quarters of its lifetime have passed,
and a refused refresh (its family expired or was revoked) falls back to one password grant.
A token given on the command line cannot be refreshed: the session ends when it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

import aiohttp

from chat_client.console import printable
from chat_client.options import Credential, PasswordCredential

REQUEST_TIMEOUT = 30.0
REFRESH_AT = 0.75  # of the access token's lifetime...
REFRESH_MARGIN = 2.0  # ...and at least this many seconds before its end (`exp` is whole seconds)


class Refused(Exception):
    """A service answered an HTTP error: a handshake, a grant or a refresh was refused."""

    def __init__(self, status: int, error: str, description: str, retry_after: str | None) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.description = description
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying later: overloaded, rate limited, or a dependency down."""
        return self.status in (429, 502, 503, 504)

    def seconds(self) -> float | None:
        """Retry-After, when the answer gave a usable one."""
        try:
            return max(0.0, float(self.retry_after)) if self.retry_after else None
        except ValueError:
            return None

    def explain(self) -> str:
        text = f"{self.status} {self.error}"
        if self.description:
            text += f": {self.description}"
        if self.retry_after:
            text += f" (retry after {self.retry_after} s)"
        return printable(text)


async def refuse_http_errors(response: aiohttp.ClientResponse) -> None:
    """The session's `raise_for_status`: turns an error answer into `Refused` while its body,
    which says why, can still be read (`ws_connect` drops it before raising)."""
    if response.status < 400:
        return
    error, description = response.reason or "", ""
    with contextlib.suppress(ValueError, aiohttp.ClientError):
        body = json.loads(await response.read())
        if isinstance(body, dict):
            error = str(body.get("error", error))
            description = str(body.get("error_description", ""))
    raise Refused(response.status, error, description, response.headers.get("Retry-After"))


@dataclass
class _Grant:
    access: str = field(repr=False)
    refresh: str | None = field(repr=False)
    refresh_due: float | None  # time.monotonic() when it should be refreshed
    expires_at: float | None  # wall-clock, for the status line


class Tokens:
    """The access token to connect (and re-identify a socket) with."""

    def __init__(
        self, session: aiohttp.ClientSession, auth_url: str, credential: Credential
    ) -> None:
        self._session = session
        self._auth_url = auth_url
        self._credential = credential
        self._grant: _Grant | None = None
        # One refresh at a time: refresh tokens rotate, and using a spent one (two refreshes
        # racing, the socket's and an API call's) would revoke the whole family.
        self._refreshing = asyncio.Lock()
        if not isinstance(credential, PasswordCredential):
            self._grant = _Grant(credential.token, None, None, None)

    async def start(self) -> None:
        """Logs in when the credential is a password. Raises `Refused`, or `aiohttp.ClientError`
        / `TimeoutError` / `ValueError` when the auth service cannot be reached or read."""
        if self._grant is None:
            await self._password_grant()

    @property
    def access(self) -> str:
        assert self._grant is not None, "start() first"
        return self._grant.access

    @property
    def refreshable(self) -> bool:
        return isinstance(self._credential, PasswordCredential)

    @property
    def expires_at(self) -> float | None:
        return None if self._grant is None else self._grant.expires_at

    def refresh_in(self) -> float | None:
        """Seconds until the token should be refreshed (None: never)."""
        if self._grant is None or self._grant.refresh_due is None:
            return None
        return max(0.0, self._grant.refresh_due - time.monotonic())

    async def refresh(self, stale: str | None = None) -> str:
        """A fresh access token (raises as `start` does); when `stale` is given and the
        token is no longer that one, another caller refreshed it meanwhile: that will do."""
        async with self._refreshing:
            if stale is not None and self._grant is not None and self._grant.access != stale:
                return self._grant.access
            return await self._refresh()

    async def _refresh(self) -> str:
        grant = self._grant
        if grant is not None and grant.refresh is not None:
            try:
                await self._grant_request(
                    {"grant_type": "refresh_token", "refresh_token": grant.refresh}
                )
                return self.access
            except Refused as refused:
                if refused.transient or not self.refreshable:
                    raise
                # The family expired or was revoked: log in again, once.
        if not self.refreshable:
            raise Refused(401, "invalid_token", "the token cannot be refreshed", None)
        await self._password_grant()
        return self.access

    async def _password_grant(self) -> None:
        who = self._credential
        assert isinstance(who, PasswordCredential)
        await self._grant_request(
            {"grant_type": "password", "username": who.username, "password": who.password}
        )

    async def _grant_request(self, form: dict[str, str]) -> None:
        started = time.monotonic()
        async with self._session.post(
            f"{self._auth_url}/token",
            data=form,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            body = await response.json(content_type=None)
            status = response.status
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise Refused(status, "invalid_response", "no access_token in the answer", None)
        refresh = body.get("refresh_token")
        lifetime = body.get("expires_in")
        due = expires = None
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0:
            due = started + max(lifetime / 2, min(lifetime * REFRESH_AT, lifetime - REFRESH_MARGIN))
            expires = time.time() + lifetime
        self._grant = _Grant(access, refresh if isinstance(refresh, str) else None, due, expires)

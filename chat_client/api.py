"""The chat service's rooms API (`/api/rooms…`), called by `chat-client` for what the
socket protocol does not do: create a private room, invite or remove a member."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from chat_client.commands import RoomCall
from chat_client.tokens import Refused, Tokens

REQUEST_TIMEOUT = 10.0


def api_base(ws_url: str) -> str:
    """The HTTP origin of the chat instance behind a `/ws` URL (same host and port)."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def _path(segment: str) -> str:
    # Room names and usernames hold only URL-safe characters, but "." and ".." would be
    # read as path steps: quoted, they stay one segment.
    return quote(segment, safe=":,") if segment not in (".", "..") else segment.replace(".", "%2E")


class RoomsApi:
    """Calls the rooms API of the instance a connection is on, as the user: with the access
    token the socket holds, refreshed once when the API says it expired."""

    def __init__(self, http: aiohttp.ClientSession, tokens: Tokens, ws_url: str) -> None:
        self._http = http
        self._tokens = tokens
        self._base = api_base(ws_url)

    async def call(self, call: RoomCall) -> None:
        """Carries out `call`. Raises `Refused` with the API's error, or `aiohttp.ClientError`
        / `TimeoutError` when the instance cannot be reached."""
        for attempt in range(2):
            token = self._tokens.access
            try:
                await self._send(call, token)
                return
            except Refused as refused:
                if refused.status != 401 or attempt or not self._tokens.refreshable:
                    raise
                await self._tokens.refresh(stale=token)

    async def _send(self, call: RoomCall, token: str) -> None:
        room = _path(call.room)
        if call.action == "create":
            method, path, body = "POST", "/api/rooms", {"room": call.room}
        else:
            method = "PUT" if call.action == "invite" else "DELETE"
            path, body = f"/api/rooms/{room}/members/{_path(call.username)}", None
        async with self._http.request(
            method,
            URL(self._base + path, encoded=True),
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            await response.read()  # errors were raised by the session's refuse_http_errors

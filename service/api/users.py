"""Usernames to users, as the auth service knows them (`GET /users/{username}` with this
service's client credentials), cached briefly: the API addresses users by name."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class DirectoryUnavailable(Exception):
    """The auth service could not answer."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    disabled: bool


class UserDirectory:
    """Looks users up by name (any letter case), with a small, bounded, short-lived cache."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        auth_url: str,
        client_id: str,
        client_secret: str,
        timeout: float,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        max_entries: int = 10_000,
    ) -> None:
        self._session = session
        self._url = auth_url.rstrip("/") + "/users/"
        self._authorization = aiohttp.encode_basic_auth(client_id, client_secret)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ttl, self._negative_ttl = ttl, negative_ttl
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[float, User | None]] = OrderedDict()

    async def find(self, username: str) -> User | None:
        """The user of that name, None for none; raises `DirectoryUnavailable`."""
        if not 3 <= len(username) <= 32 or not set(username) <= USERNAME_CHARS:
            return None  # no such name can exist: nobody need be asked
        key = username.lower()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        user = await self._fetch(username)
        self._cache[key] = (time.monotonic() + (self._ttl if user else self._negative_ttl), user)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return user

    async def _fetch(self, username: str) -> User | None:
        try:
            async with self._session.get(
                self._url + quote(username, safe=""),
                headers={"Authorization": self._authorization},
                timeout=self._timeout,
            ) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise DirectoryUnavailable(f"user lookup answered {response.status}")
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DirectoryUnavailable(type(exc).__name__) from exc
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), t)
            for k, t in (("id", str), ("username", str), ("disabled", bool))
        ):
            raise DirectoryUnavailable("user lookup answered something unexpected")
        return User(body["id"], body["username"], body["disabled"])

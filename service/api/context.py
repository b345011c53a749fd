"""What the API's handlers share: the node's parts, the user directory, request parsing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from common.room_names import ROOM
from service.api.errors import ApiError, bad_request, refused, unavailable
from service.api.principal import caller
from service.api.users import DirectoryUnavailable, User, UserDirectory
from service.node import ChatNode
from service.rooms.access import Actor, Decision
from service.rooms.namespaces import Policy


@dataclass(frozen=True)
class Api:
    node: ChatNode
    directory: UserDirectory

    async def caller(self, request: web.Request) -> Actor:
        return await caller(request, self.node.checker)

    async def user(self, username: str) -> User | None:
        try:
            return await self.directory.find(username)
        except DirectoryUnavailable:
            raise unavailable("the auth service is unavailable") from None


API = web.AppKey("chat_api", Api)


def api_of(request: web.Request) -> Api:
    return request.app[API]


def room_named(value: object) -> str:
    """A room name from the path or a body, or 400 `bad_room`."""
    if not isinstance(value, str) or not ROOM.fullmatch(value):
        raise bad_request("room must match ^[A-Za-z0-9_.:,-]{1,128}$", "bad_room")
    return value


def room_of(request: web.Request) -> str:
    return room_named(request.match_info["room"])


def allowed(decision: Decision) -> Policy:
    if decision.policy is None or not decision.allowed:
        raise refused(decision)
    return decision.policy


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    try:
        body = json.loads(await request.text())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body

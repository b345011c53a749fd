"""`/api/rooms/{room}/messages` (publish, read) and `/api/users/{username}/disconnect`."""

from __future__ import annotations

import json

from aiohttp import web

from service.api.context import allowed, api_of, json_body, room_of
from service.api.errors import bad_request, forbidden, not_found
from service.native import frames

routes = web.RouteTableDef()

MAX_PAGE = 100
MAX_IDEMPOTENCY_KEY = 64


@routes.post("/api/rooms/{room}/messages")
async def publish(request: web.Request) -> web.Response:
    api = api_of(request)
    actor = await api.caller(request)
    room = room_of(request)
    body = await json_body(request)
    text, key = body.get("text"), body.get("idempotency_key")
    max_text = api.node.settings.max_text
    if not isinstance(text, str) or not text:
        raise bad_request("text must be a non-empty string", "bad_text")
    if len(text) > max_text:
        raise bad_request(f"text is limited to {max_text} characters", "too_long")
    if frames.SURROGATE.search(text) or (isinstance(key, str) and frames.SURROGATE.search(key)):
        raise bad_request("text and key must be valid Unicode (no lone surrogates)", "bad_text")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY):
        raise bad_request(
            f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters", "bad_idempotency_key"
        )
    policy = allowed(await api.node.access.to_send(actor, room, joined=False))
    published = await api.node.hub.post(room, policy, actor, text, key=key)
    return web.json_response(
        {"id": published.message_id, "offset": published.offset},
        status=200 if published.repeat else 201,
    )


def _offset(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise bad_request(f"{name} must be an offset (a non-negative integer)")
    return int(value)


@routes.get("/api/rooms/{room}/messages")
async def read(request: web.Request) -> web.Response:
    api = api_of(request)
    actor = await api.caller(request)
    room = room_of(request)
    before, after = _offset(request, "before"), _offset(request, "after")
    if before is not None and after is not None:
        raise bad_request("give before or after, not both")
    limit = _offset(request, "limit")
    limit = 50 if limit is None else limit
    if not 1 <= limit <= MAX_PAGE:
        raise bad_request(f"limit must be from 1 to {MAX_PAGE}")
    policy = allowed(await api.node.access.to_read(actor, room))
    epoch, stored = await api.node.hub.page(room, policy, before=before, after=after, limit=limit)
    head = json.dumps({"room": room, "epoch": epoch}).encode()
    body = head[:-1] + b', "messages": [' + b", ".join(s.frame for s in stored) + b"]}"
    return web.Response(body=body, content_type="application/json")


@routes.get("/api/rooms/{room}/presence")
async def presence(request: web.Request) -> web.Response:
    api = api_of(request)
    actor = await api.caller(request)
    room = room_of(request)
    policy = allowed(await api.node.access.to_read(actor, room))
    if not policy.presence:
        raise not_found("this room's namespace keeps no presence")
    count, members = await api.node.stores.presence.query(room)
    listed = [member.public() for member in members]
    return web.json_response({"room": room, "count": count, "members": listed})


@routes.post("/api/users/{username}/disconnect")
async def disconnect(request: web.Request) -> web.Response:
    api = api_of(request)
    actor = await api.caller(request)
    if not actor.server:
        raise forbidden()
    user = await api.user(request.match_info["username"])
    if user is None:
        raise not_found("no user of that name")
    await api.node.control.disconnect(user.id)
    return web.Response(status=204)

"""`/api/rooms`: private rooms (`join: members`), their owner and members (docs/api.md)."""

from __future__ import annotations

from aiohttp import web

from service.api.context import Api, api_of, json_body, room_named, room_of
from service.api.errors import ApiError, bad_request, forbidden, not_found, refused
from service.rooms.access import Actor
from service.rooms.private import Owner

routes = web.RouteTableDef()


def _private(api: Api, room: str) -> None:
    policy = api.node.access.policy(room)
    if policy is None:
        raise bad_request("no namespace of that name is configured", "unknown_namespace")
    if policy.join != "members":
        raise bad_request(
            "only rooms of a namespace whose join is members have members", "bad_room"
        )


async def _private_room(request: web.Request) -> tuple[Api, Actor, str]:
    """The API, the caller and the private room a request is about (or its refusal)."""
    api = api_of(request)
    actor = await api.caller(request)
    room = room_of(request)
    _private(api, room)
    return api, actor, room


def _no_room(actor: Actor) -> ApiError:
    # A server may learn that a room does not exist; a user learns nothing.
    return not_found("no such room") if actor.server else forbidden()


async def _owned(api: Api, actor: Actor, room: str) -> Owner:
    """The room's owner, when the caller may manage it (its owner, or a server)."""
    owner = await api.node.private.owner(room)
    if owner is None:
        raise _no_room(actor)
    if not actor.server and owner.id != actor.id:
        raise forbidden()  # the same answer as for a room that does not exist
    return owner


@routes.post("/api/rooms")
async def create_room(request: web.Request) -> web.Response:
    api = api_of(request)
    actor = await api.caller(request)
    room = room_named((await json_body(request)).get("room"))
    _private(api, room)
    if not await api.node.private.create(room, Owner(actor.id, actor.username)):
        raise ApiError(409, "room_exists", "a room of that name exists")
    return web.json_response({"room": room, "owner": actor.public()}, status=201)


@routes.delete("/api/rooms/{room}")
async def delete_room(request: web.Request) -> web.Response:
    api, actor, room = await _private_room(request)
    await _owned(api, actor, room)
    await api.node.private.delete(room)
    return web.Response(status=204)


@routes.get("/api/rooms/{room}/members")
async def list_members(request: web.Request) -> web.Response:
    api, actor, room = await _private_room(request)
    decision = await api.node.access.to_read(actor, room)
    if not decision.allowed:
        raise refused(decision)
    owner = await api.node.private.owner(room)
    if owner is None:  # deleted since
        raise _no_room(actor)
    count, members = await api.node.private.members(room)
    return web.json_response(
        {
            "room": room,
            "owner": {"id": owner.id, "username": owner.username},
            "count": count,
            "members": [{"id": m.id, "username": m.username} for m in members],
        }
    )


@routes.put("/api/rooms/{room}/members/{username}")
async def add_member(request: web.Request) -> web.Response:
    api, actor, room = await _private_room(request)
    await _owned(api, actor, room)
    user = await api.user(request.match_info["username"])
    if user is None or user.disabled:
        raise not_found("no user of that name")
    outcome = await api.node.private.add(room, Owner(user.id, user.username))
    if outcome == "full":
        raise ApiError(409, "room_full", "the room has as many members as it may")
    if outcome == "missing":  # deleted meanwhile
        raise _no_room(actor)
    return web.Response(status=204)


@routes.delete("/api/rooms/{room}/members/{username}")
async def remove_member(request: web.Request) -> web.Response:
    api, actor, room = await _private_room(request)
    username = request.match_info["username"]
    if not actor.server and username.lower() == actor.username.lower():
        if not await api.node.private.is_member(room, actor.id):
            raise forbidden()  # leaving: only a member can
        user_id = actor.id
    else:
        await _owned(api, actor, room)
        user = await api.user(username)
        if user is None:
            raise not_found("no user of that name")
        user_id = user.id
    if not await api.node.private.remove(room, user_id):
        raise not_found("that user is not a member")
    return web.Response(status=204)

"""Registration, discovery and health; `ROUTES` gathers every handler of the auth service
(see docs/auth.md for every request and response)."""

from __future__ import annotations

from aiohttp import web

from auth_service import account_views, oauth_views
from auth_service.errors import OAuthError, invalid_client
from auth_service.request_input import NO_STORE, address_of, parts_of, read_json
from auth_service.users import validate_password, validate_username
from common.redis import REDIS_ERRORS

routes = web.RouteTableDef()


@routes.post("/users")
async def register(request: web.Request) -> web.Response:
    parts = parts_of(request)
    await parts.registrations.take(address_of(request))
    body = await read_json(request)
    username = validate_username(body.get("username"))
    password = validate_password(body.get("password"))
    password_hash = await parts.passwords.hash(password, owners=(f"addr:{address_of(request)}",))
    user = await parts.users.create(username, password_hash)
    if user is None:
        raise OAuthError(
            "username_taken",
            "that username, or one that looks like it, is already registered",
            status=409,
        )
    return web.json_response(user.public(), status=201)


@routes.get("/users/{username}")
async def lookup(request: web.Request) -> web.Response:
    """A user by name, in any letter case, for registered clients only (the chat service
    resolves the usernames of its API with it). Without client credentials it answers 401
    whatever the name, so it cannot be used to learn which names exist."""
    parts = parts_of(request)
    authorization = request.headers.get("Authorization")
    if authorization is None or parts.clients.authenticate(authorization) is None:
        raise invalid_client("looking up a user requires client authentication")
    user = await parts.users.by_username(request.match_info["username"])
    if user is None:
        raise OAuthError("not_found", "no user of that name", status=404)
    return web.json_response({**user.public(), "disabled": user.disabled}, headers=NO_STORE)


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(await parts_of(request).keyring.jwks())


@routes.get("/.well-known/oauth-authorization-server")
async def metadata(request: web.Request) -> web.Response:
    settings = parts_of(request).settings
    base = settings.issuer
    auth_methods = ["client_secret_basic", "client_secret_post"]
    return web.json_response(
        {
            "issuer": base,
            "token_endpoint": f"{base}/token",
            "introspection_endpoint": f"{base}/introspect",
            "revocation_endpoint": f"{base}/revoke",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "grant_types_supported": ["password", "refresh_token", "client_credentials"],
            "response_types_supported": [],
            "scopes_supported": [*settings.scopes, *settings.client_scopes],
            "token_endpoint_auth_methods_supported": [*auth_methods, "none"],
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": [*auth_methods, "none"],
        }
    )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await parts_of(request).redis.ping()
    except REDIS_ERRORS:
        return web.json_response({"status": "unavailable", "redis": False}, status=503)
    return web.json_response({"status": "ready", "redis": True})


ROUTES = [*routes, *oauth_views.routes, *account_views.routes]

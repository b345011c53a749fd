"""The OAuth 2 endpoints: `/token` (RFC 6749), `/introspect` (RFC 7662), `/revoke`
(RFC 7009)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from auth_service.clients import PUBLIC_CLIENT
from auth_service.components import AuthComponents
from auth_service.errors import OAuthError, invalid_client, invalid_grant, invalid_request
from auth_service.grants import family_member
from auth_service.logins import check_password, still_valid
from auth_service.refresh import ReusedRefreshToken
from auth_service.request_input import (
    FORM,
    NO_STORE,
    address_of,
    parts_of,
    read_form,
    read_json,
)
from common.credentials import looks_like_jwt

log = logging.getLogger(__name__)

REVOCABLE = ("access_token", "refresh_token")
# Tokens per `/introspect/batch` request: a 4 KiB token each still fits the body limit.
MAX_BATCH = 50

routes = web.RouteTableDef()


def _scope(requested: str | None, allowed: tuple[str, ...], default: str) -> str:
    if requested is None:
        return default
    scopes = requested.split(" ")
    if not requested or not all(scope in allowed for scope in scopes):
        raise OAuthError("invalid_scope", "the requested scope is unknown or not allowed")
    return " ".join(dict.fromkeys(scopes))


def _required(form: MultiDictProxy[str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise invalid_request(f"{name} is required")
    return value


def _token_param(form: MultiDictProxy[str]) -> tuple[str, str | None]:
    """`/revoke`'s token and hint; RFC 7009 §2.2.1 answers an unknown hint with an error."""
    token = _required(form, "token")
    hint = form.get("token_type_hint")
    if hint is not None and hint not in REVOCABLE:
        raise OAuthError(
            "unsupported_token_type", "token_type_hint must be one of " + ", ".join(REVOCABLE)
        )
    return token, hint


def _token_response(access: str, claims: dict[str, Any], refresh: str | None) -> web.Response:
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": claims["exp"] - claims["iat"],
        "scope": claims["scope"],
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    return web.json_response(body, headers=NO_STORE)


async def _password_grant(
    parts: AuthComponents, request: web.Request, form: MultiDictProxy[str], client: str
) -> web.Response:
    username = _required(form, "username")
    password = _required(form, "password")
    scope = _scope(form.get("scope"), parts.settings.scopes, parts.settings.default_scope)
    user = await check_password(parts, request, username, password)
    if user is None:
        raise invalid_grant("invalid username or password")
    refresh, family = await parts.refresh.start_family(
        user_id=user.id, client_id=client, scope=scope
    )
    if not await still_valid(parts, user):
        await parts.revocations.revoke_family(family, "password_changed")
        raise invalid_grant("invalid username or password")
    await parts.revocations.enforce_grant_limit(user.id, keep=family_member(family))
    access, claims = await parts.access.issue(
        sub=user.id, username=user.username, scope=scope, client_id=client, sid=family
    )
    return _token_response(access, claims, refresh)


async def _refresh_grant(
    parts: AuthComponents, form: MultiDictProxy[str], client: str
) -> web.Response:
    token = _required(form, "refresh_token")
    requested = form.get("scope")
    scope: str | None = None
    if requested is not None:
        # Checked before rotating: a refused scope must not spend the token. A rotation
        # keeps the grant's scope, and a token `lookup` cannot find will not rotate either.
        current = await parts.refresh.lookup(token)
        if current is not None:
            scope = _scope(requested, tuple(current.scope.split(" ")), current.scope)
    try:
        successor, record = await parts.refresh.rotate(token, client_id=client)
    except ReusedRefreshToken as reuse:  # the family is revoked and announced already
        log.info("revoked", extra={"kind": "sid", "id": reuse.family, "reason": "reuse"})
        raise
    user = await parts.users.by_id(record.user_id)
    if user is None or user.disabled:
        await parts.revocations.revoke_family(record.family, "user_disabled")
        raise invalid_grant("the refresh token is invalid, expired or revoked")
    access, claims = await parts.access.issue(
        sub=user.id,
        username=user.username,
        scope=record.scope if scope is None else scope,
        client_id=client,
        sid=record.family,
    )
    return _token_response(access, claims, successor)


async def _client_credentials_grant(
    parts: AuthComponents, form: MultiDictProxy[str], client: str | None
) -> web.Response:
    if client is None:
        raise invalid_client("client_credentials requires client authentication")
    # A registered client may also ask for the scopes no user's grant can carry
    # (`chat:server`: the chat service's server API).
    allowed = (*parts.settings.scopes, *parts.settings.client_scopes)
    scope = _scope(form.get("scope"), allowed, parts.settings.default_scope)
    access, claims = await parts.access.issue(
        sub=client, username=None, scope=scope, client_id=client, sid=None
    )
    return _token_response(access, claims, None)


@routes.post("/token")
async def token(request: web.Request) -> web.Response:
    parts = parts_of(request)
    form = await read_form(request)
    client = parts.clients.authenticate(request.headers.get("Authorization"), form)
    grant = form.get("grant_type")
    if grant == "password":
        response = await _password_grant(parts, request, form, client or PUBLIC_CLIENT)
    elif grant == "refresh_token":
        response = await _refresh_grant(parts, form, client or PUBLIC_CLIENT)
    elif grant == "client_credentials":
        response = await _client_credentials_grant(parts, form, client)
    elif not grant:
        raise invalid_request("grant_type is required")
    else:
        raise OAuthError(
            "unsupported_grant_type",
            "grant_type must be password, refresh_token or client_credentials",
        )
    parts.metrics.tokens_issued[grant].inc()
    return response


@routes.post("/introspect")
async def introspect(request: web.Request) -> web.Response:
    parts = parts_of(request)
    authorization = request.headers.get("Authorization")
    if authorization is None and request.content_type != FORM:
        raise invalid_client("introspection requires client authentication")
    form = await read_form(request)
    if parts.clients.authenticate(authorization, form) is None:
        raise invalid_client("introspection requires client authentication")
    # RFC 7662 §2.1: the hint only narrows the search, so an unknown one is not an error.
    token = _required(form, "token")
    answer = await parts.introspector.introspect(token)
    if answer["active"]:
        parts.metrics.introspection_active.inc()
    else:
        parts.metrics.introspection_inactive.inc()
    return web.json_response(answer, headers=NO_STORE)


@routes.post("/introspect/batch")
async def introspect_batch(request: web.Request) -> web.Response:
    """Several introspections in one request, for a resource server that coalesces its
    look-ups: JSON `{"tokens": [...]}` (at most `MAX_BATCH`) answered by `{"answers": [...]}`,
    each answer in order and exactly what `/introspect` answers for that token. HTTP Basic
    client authentication only, checked before the body is parsed."""
    parts = parts_of(request)
    authorization = request.headers.get("Authorization")
    if authorization is None or parts.clients.authenticate(authorization) is None:
        raise invalid_client("introspection requires client authentication")
    tokens = (await read_json(request)).get("tokens")
    if not isinstance(tokens, list) or not 0 < len(tokens) <= MAX_BATCH:
        raise invalid_request(f"tokens must be a list of 1 to {MAX_BATCH} tokens")
    if not all(isinstance(token, str) and token for token in tokens):
        raise invalid_request("each token must be a non-empty string")
    answers = await parts.introspector.introspect_many(tokens)
    active = sum(1 for answer in answers if answer["active"])
    parts.metrics.introspection_active.inc(active)
    parts.metrics.introspection_inactive.inc(len(answers) - active)
    return web.json_response({"answers": answers}, headers=NO_STORE)


@routes.post("/revoke")
async def revoke(request: web.Request) -> web.Response:
    """RFC 7009. A token issued to a confidential client may be revoked by that client only
    (authenticated, §2.1); one issued to the public client, by whoever holds it. Unknown,
    expired and already revoked tokens are a no-op: only a revocation that changes something
    is announced, so repeating one costs the chat instances nothing. Callers without client
    credentials are held to a quota per address."""
    parts = parts_of(request)
    form = await read_form(request)
    caller = parts.clients.authenticate(request.headers.get("Authorization"), form)
    if caller is None:  # a registered client is not held to an address's quota
        await parts.revocation_quota.take(address_of(request))
    token, _hint = _token_param(form)
    if looks_like_jwt(token):
        # Signature and expiry only, not "still active": a revoked token is a no-op below.
        claims = await parts.introspector.genuine_access_token(token)
        if claims is not None:
            _check_issued_to(claims["client_id"], caller)
            await parts.revocations.revoke_access_token(claims["jti"], claims["exp"])
    else:
        owner = await parts.refresh.owner_of(token)
        if owner is not None:
            family, client_id = owner
            _check_issued_to(client_id, caller)
            await parts.revocations.revoke_family(family, "revoked")
    return web.Response(status=200, headers=NO_STORE)


def _check_issued_to(client_id: str, caller: str | None) -> None:
    if client_id != PUBLIC_CLIENT and caller != client_id:
        raise OAuthError("unauthorized_client", "the token was not issued to this client")

"""HTTP handlers of the auth service (see docs/auth.md for every request and response)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from aiohttp_session import get_session, new_session
from multidict import MultiDictProxy

from auth_service.clients import PUBLIC_CLIENT
from auth_service.components import COMPONENTS, AuthComponents
from auth_service.errors import (
    OAuthError,
    invalid_client,
    invalid_grant,
    invalid_request,
    invalid_token,
    unauthenticated,
)
from auth_service.grants import family_member, session_member
from auth_service.sessions import new_session_id, session_info, start_session
from auth_service.tokens import ReusedRefreshToken
from auth_service.users import PASSWORD_MAX, User, validate_password, validate_username
from common.credentials import bearer_offset, looks_like_jwt
from common.redis import REDIS_ERRORS

REVOCABLE = ("access_token", "refresh_token")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"

routes = web.RouteTableDef()


def _parts(request: web.Request) -> AuthComponents:
    return request.app[COMPONENTS]


def _address(request: web.Request) -> str:
    return request.remote or "unknown"


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """A form-encoded body in which no parameter appears twice (RFC 6749 §3.1)."""
    if request.content_type != FORM:
        raise invalid_request(f"the body must be {FORM}")
    try:
        form = await request.post()
    except (UnicodeDecodeError, LookupError) as exc:  # bad bytes, or an unknown charset
        raise invalid_request("the body is not text in a known encoding") from exc
    for name in form:
        values = form.getall(name)
        if len(values) > 1:
            raise invalid_request(f"parameter {name!r} must not be repeated")
        if not isinstance(values[0], str):
            raise invalid_request(f"parameter {name!r} must be text")
    return form  # type: ignore[return-value]


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise invalid_request("the body must be application/json")
    try:
        body = await request.json()
    # Bad JSON or bytes, an unknown charset, or nesting deeper than the parser recurses.
    except (ValueError, LookupError, RecursionError) as exc:
        raise invalid_request("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise invalid_request("the body must be a JSON object")
    return body


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


def _owners(username: str, address: str) -> tuple[str, str]:
    """Who a password check is done for, to share the hashing pool fairly."""
    return f"user:{username.lower()}", f"addr:{address}"


async def _check_password(
    parts: AuthComponents, request: web.Request, username: str, password: str
) -> User | None:
    """The user if the password is right; throttled per account and per address (the check
    is reserved before it runs, so concurrent guesses count before any is answered)."""
    address = _address(request)
    reservation = await parts.throttle.reserve(username, address)
    owners = _owners(username, address)
    try:
        user = await parts.users.by_username(username)
        ok = len(password) <= PASSWORD_MAX and await parts.passwords.verify(
            user.password_hash if user else None, password, owners=owners
        )
    except BaseException:
        await asyncio.shield(parts.throttle.release(reservation))
        raise
    ok = ok and user is not None and not user.disabled
    await parts.throttle.finish(reservation, succeeded=ok)
    if not ok or user is None:
        return None
    if parts.passwords.needs_rehash(user.password_hash):
        rehashed = await parts.passwords.hash(password, owners=owners)
        await parts.users.set_password_hash(user.id, rehashed)
        user = replace(user, password_hash=rehashed)
    return user


async def _still_valid(parts: AuthComponents, checked: User) -> bool:
    """After a grant was recorded: whether the password it was checked against still
    stands. A password change or disable that ran meanwhile took its snapshot of the
    user's grants before this one existed, so this grant must undo itself."""
    current = await parts.users.by_id(checked.id)
    return (
        current is not None
        and not current.disabled
        and current.password_hash == checked.password_hash
    )


# -- users ---------------------------------------------------------------------------------


@routes.post("/users")
async def register(request: web.Request) -> web.Response:
    parts = _parts(request)
    await parts.registrations.take(_address(request))
    body = await read_json(request)
    username = validate_username(body.get("username"))
    password = validate_password(body.get("password"))
    password_hash = await parts.passwords.hash(password, owners=(f"addr:{_address(request)}",))
    user = await parts.users.create(username, password_hash)
    if user is None:
        raise OAuthError(
            "username_taken",
            "that username, or one that looks like it, is already registered",
            status=409,
        )
    return web.json_response(user.public(), status=201)


# -- tokens ----------------------------------------------------------------------------------


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
    user = await _check_password(parts, request, username, password)
    if user is None:
        raise invalid_grant("invalid username or password")
    refresh, family = await parts.refresh.start_family(
        user_id=user.id, client_id=client, scope=scope
    )
    if not await _still_valid(parts, user):
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
    except ReusedRefreshToken as reuse:
        await parts.revocations.announce("sid", reuse.family, "refresh_token_reuse")
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
    scope = _scope(form.get("scope"), parts.settings.scopes, parts.settings.default_scope)
    access, claims = await parts.access.issue(
        sub=client, username=None, scope=scope, client_id=client, sid=None
    )
    return _token_response(access, claims, None)


@routes.post("/token")
async def token(request: web.Request) -> web.Response:
    parts = _parts(request)
    form = await read_form(request)
    client = parts.clients.authenticate(request.headers.get("Authorization"), form)
    grant = form.get("grant_type")
    if grant == "password":
        return await _password_grant(parts, request, form, client or PUBLIC_CLIENT)
    if grant == "refresh_token":
        return await _refresh_grant(parts, form, client or PUBLIC_CLIENT)
    if grant == "client_credentials":
        return await _client_credentials_grant(parts, form, client)
    if not grant:
        raise invalid_request("grant_type is required")
    raise OAuthError(
        "unsupported_grant_type", "grant_type must be password, refresh_token or client_credentials"
    )


@routes.post("/introspect")
async def introspect(request: web.Request) -> web.Response:
    parts = _parts(request)
    authorization = request.headers.get("Authorization")
    if authorization is None and request.content_type != FORM:
        raise invalid_client("introspection requires client authentication")
    form = await read_form(request)
    if parts.clients.authenticate(authorization, form) is None:
        raise invalid_client("introspection requires client authentication")
    # RFC 7662 §2.1: the hint only narrows the search, so an unknown one is not an error.
    token = _required(form, "token")
    return web.json_response(await parts.introspector.introspect(token), headers=NO_STORE)


@routes.post("/revoke")
async def revoke(request: web.Request) -> web.Response:
    """RFC 7009. A token issued to a confidential client may be revoked by that client only
    (authenticated, §2.1); one issued to the public client, by whoever holds it. Unknown,
    expired and already revoked tokens are a no-op: only a revocation that changes something
    is announced, so repeating one costs the chat instances nothing."""
    parts = _parts(request)
    await parts.revocation_quota.take(_address(request))
    form = await read_form(request)
    caller = parts.clients.authenticate(request.headers.get("Authorization"), form)
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


# -- browser sessions ----------------------------------------------------------------------


def _login_refused() -> OAuthError:
    """/login's wrong password: 401 here, where `/token` answers 400 (docs/auth.md)."""
    return OAuthError(
        "invalid_grant",
        "invalid username or password",
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="auth"'},
    )


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    """Password login for browsers. JSON only: a cross-site form cannot post it (login CSRF)."""
    parts = _parts(request)
    body = await read_json(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise invalid_request("username and password are required strings")
    user = await _check_password(parts, request, username, password)
    if user is None:
        raise _login_refused()
    previous = await get_session(request)
    if previous.identity is not None:
        # A fresh id at every login, so an id planted before login (fixation) is worthless.
        replaced = session_info(dict(previous))
        await parts.sessions.delete(str(previous.identity))
        if replaced is not None:
            await parts.grants.remove_session(
                replaced.user_id, replaced.sid, str(previous.identity)
            )
            await parts.revocations.end_session(replaced.sid)
    session = await new_session(request)
    # The id is chosen here rather than when the response is saved, so the user's grant
    # index can name it (for "revoke all my sessions" and password changes).
    session.set_new_identity(new_session_id())
    info = start_session(
        session, user_id=user.id, username=user.username, ttl=parts.settings.session_ttl
    )
    await parts.grants.add_session(user.id, info.sid, str(session.identity), info.exp)
    if not await _still_valid(parts, user):
        session.invalidate()
        await parts.grants.remove_session(user.id, info.sid, str(session.identity))
        raise _login_refused()
    member = session_member(info.sid, str(session.identity))
    await parts.revocations.enforce_grant_limit(user.id, keep=member)
    return web.json_response({**user.public(), "expires_at": info.exp}, headers=NO_STORE)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    """Ends the caller's session. JSON only (`{}`): a cross-site form cannot post it, so no
    other site can sign a user out."""
    parts = _parts(request)
    await read_json(request)
    session = await get_session(request)
    info = session_info(dict(session))
    identity = session.identity
    session.invalidate()
    if identity is not None:
        # Deleted now, not when the response is saved: the announcement below must find
        # the session already gone, or a socket opened in between would outlive it.
        await parts.sessions.delete(str(identity))
    if info is not None and identity is not None:
        await parts.grants.remove_session(info.user_id, info.sid, str(identity))
        await parts.revocations.end_session(info.sid)
    return web.Response(status=204, headers=NO_STORE)


# -- who am I, and account actions ---------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the user and the grant (`sid`) the credential belongs to."""

    user_id: str
    username: str
    sid: str | None

    def public(self) -> dict[str, str]:
        return {"id": self.user_id, "username": self.username}


async def _bearer_user(parts: AuthComponents, request: web.Request) -> Caller | None:
    header = request.headers.get("Authorization")
    offset = bearer_offset(header)
    if header is None or offset is None:
        return None  # not this scheme: the next authenticator decides
    claims = await parts.introspector.active_access_token(header[offset:].strip())
    if claims is None or claims.get("username") is None:
        raise invalid_token()
    return Caller(claims["sub"], claims["username"], claims.get("sid"))


async def _session_user(parts: AuthComponents, request: web.Request) -> Caller | None:
    if parts.settings.cookie_name not in request.cookies:
        return None
    value = parts.sessions.cookie_value(request)
    info = None if value is None else await parts.introspector.active_session(value)
    if info is None:
        raise invalid_token("the session is not valid")
    return Caller(info.user_id, info.username, info.sid)


AUTHENTICATORS = (_bearer_user, _session_user)


async def authenticate(parts: AuthComponents, request: web.Request) -> Caller:
    """Bearer first, then the session cookie; the first that answers wins. A credential that
    is presented but bad is a 401, never a fall-through to the next one."""
    for authenticator in AUTHENTICATORS:
        caller = await authenticator(parts, request)
        if caller is not None:
            return caller
    raise unauthenticated()


@routes.get("/me")
async def me(request: web.Request) -> web.Response:
    caller = await authenticate(_parts(request), request)
    return web.json_response(caller.public(), headers=NO_STORE)


@routes.post("/me/password")
async def change_password(request: web.Request) -> web.Response:
    """Changes the caller's password; every other session and token of the user is revoked."""
    parts = _parts(request)
    caller = await authenticate(parts, request)
    body = await read_json(request)  # JSON only: a cross-site form cannot post it
    current, new = body.get("current_password"), body.get("new_password")
    if not isinstance(current, str):
        raise invalid_request("current_password is required")
    new = validate_password(new)
    if await _check_password(parts, request, caller.username, current) is None:
        raise OAuthError("invalid_grant", "the current password is wrong", status=403)
    owners = _owners(caller.username, _address(request))
    await parts.users.set_password_hash(
        caller.user_id, await parts.passwords.hash(new, owners=owners)
    )
    await parts.revocations.revoke_user_grants(caller.user_id, "password_changed", keep=caller.sid)
    return web.Response(status=204, headers=NO_STORE)


@routes.post("/me/revoke-all")
async def revoke_all(request: web.Request) -> web.Response:
    """Signs the caller out everywhere: every session and token family, this one included."""
    parts = _parts(request)
    caller = await authenticate(parts, request)
    await read_json(request)  # an empty JSON object: a cross-site form cannot post it
    revoked = await parts.revocations.revoke_user_grants(caller.user_id, "revoke_all")
    return web.json_response({"revoked": revoked}, headers=NO_STORE)


# -- discovery and health --------------------------------------------------------------------


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(await _parts(request).keyring.jwks())


@routes.get("/.well-known/oauth-authorization-server")
async def metadata(request: web.Request) -> web.Response:
    settings = _parts(request).settings
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
            "scopes_supported": list(settings.scopes),
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
        await _parts(request).redis.ping()
    except REDIS_ERRORS:
        return web.json_response({"status": "unavailable", "redis": False}, status=503)
    return web.json_response({"status": "ready", "redis": True})

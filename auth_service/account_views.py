"""Browser sessions and the caller's account: `/login`, `/logout`, `/me` and its actions."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp_session import get_session, new_session

from auth_service.components import AuthComponents
from auth_service.errors import (
    OAuthError,
    invalid_request,
    invalid_token,
    unauthenticated,
)
from auth_service.grants import session_member
from auth_service.logins import check_password, owners_of, still_valid
from auth_service.request_input import NO_STORE, address_of, parts_of, read_json
from auth_service.sessions import new_session_id, session_info, start_session
from auth_service.users import validate_password
from common.credentials import bearer_offset

routes = web.RouteTableDef()


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
    parts = parts_of(request)
    body = await read_json(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise invalid_request("username and password are required strings")
    user = await check_password(parts, request, username, password)
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
    if not await still_valid(parts, user):
        session.invalidate()
        await parts.grants.remove_session(user.id, info.sid, str(session.identity))
        raise _login_refused()
    member = session_member(info.sid, str(session.identity))
    await parts.revocations.enforce_grant_limit(user.id, keep=member)
    parts.metrics.sessions_started.inc()
    return web.json_response({**user.public(), "expires_at": info.exp}, headers=NO_STORE)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    """Ends the caller's session. JSON only (`{}`): a cross-site form cannot post it, so no
    other site can sign a user out."""
    parts = parts_of(request)
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
    caller = await authenticate(parts_of(request), request)
    return web.json_response(caller.public(), headers=NO_STORE)


@routes.post("/me/password")
async def change_password(request: web.Request) -> web.Response:
    """Changes the caller's password; every other session and token of the user is revoked."""
    parts = parts_of(request)
    caller = await authenticate(parts, request)
    body = await read_json(request)  # JSON only: a cross-site form cannot post it
    current, new = body.get("current_password"), body.get("new_password")
    if not isinstance(current, str):
        raise invalid_request("current_password is required")
    new = validate_password(new)
    if await check_password(parts, request, caller.username, current) is None:
        raise OAuthError("invalid_grant", "the current password is wrong", status=403)
    owners = owners_of(caller.username, address_of(request))
    await parts.users.set_password_hash(
        caller.user_id, await parts.passwords.hash(new, owners=owners)
    )
    await parts.revocations.revoke_user_grants(caller.user_id, "password_changed", keep=caller.sid)
    return web.Response(status=204, headers=NO_STORE)


@routes.post("/me/revoke-all")
async def revoke_all(request: web.Request) -> web.Response:
    """Signs the caller out everywhere: every session and token family, this one included."""
    parts = parts_of(request)
    caller = await authenticate(parts, request)
    await read_json(request)  # an empty JSON object: a cross-site form cannot post it
    revoked = await parts.revocations.revoke_user_grants(caller.user_id, "revoke_all")
    return web.json_response({"revoked": revoked}, headers=NO_STORE)

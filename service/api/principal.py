"""Who calls the API: `Authorization: Bearer` with a user's access token (acts as that user)
or a service's `chat:server` token (may do all), checked like socket credentials (the same
introspection and cache)."""

from __future__ import annotations

import time

from aiohttp import web

from common.credentials import bearer_offset
from service.api.errors import ApiError, unavailable
from service.auth.chain import CredentialChecker
from service.errors import Refusal, Refused
from service.rooms.access import Actor

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chat"'}
INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


async def caller(request: web.Request, checker: CredentialChecker) -> Actor:
    """The caller, or an `ApiError` (401 without or with a bad credential, 503 when the auth
    service cannot answer)."""
    header = request.headers.get("Authorization")
    offset = bearer_offset(header)
    if header is None or offset is None:
        raise ApiError(401, "unauthorized", "a Bearer access token is required", headers=CHALLENGE)
    credential = header[offset:]
    try:
        client_id = await checker.server(credential)
        if client_id is not None:
            return Actor.service(client_id)
        identity = await checker.identity(credential, token_type="access_token")
    except Refused as refused:
        if refused.refusal is Refusal.AUTH_UNAVAILABLE:
            raise unavailable("the auth service is unavailable") from None
        raise ApiError(401, "invalid_token", refused.description, headers=INVALID) from None
    if identity.exp <= time.time():
        raise ApiError(401, "invalid_token", "the credential has expired", headers=INVALID)
    return Actor(identity.user_id, identity.username)

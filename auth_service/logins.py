"""Password checks, shared by the password grant, browser login and password change: each
one reserved with the throttle before it runs and done in a fair share of the hashing pool;
and the re-check a grant makes once it is recorded."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp import web

from auth_service.components import AuthComponents
from auth_service.errors import OAuthError
from auth_service.request_input import address_of
from auth_service.users import PASSWORD_MAX, User


def owners_of(username: str, address: str) -> tuple[str, str]:
    """Who a password check is done for, to share the hashing pool fairly."""
    return f"user:{username.lower()}", f"addr:{address}"


async def check_password(
    parts: AuthComponents, request: web.Request, username: str, password: str
) -> User | None:
    """The user if the password is right; throttled per account and per address (the check
    is reserved before it runs, so concurrent guesses count before any is answered)."""
    address = address_of(request)
    try:
        reservation = await parts.throttle.reserve(username, address)
    except OAuthError as refused:
        _count_throttled(parts, refused)
        raise
    owners = owners_of(username, address)
    try:
        user = await parts.users.by_username(username)
        ok = len(password) <= PASSWORD_MAX and await parts.passwords.verify(
            user.password_hash if user else None, password, owners=owners
        )
    except BaseException as exc:
        await asyncio.shield(parts.throttle.release(reservation))
        if isinstance(exc, OAuthError):  # the hashing pool's fair share
            _count_throttled(parts, exc)
        raise
    ok = ok and user is not None and not user.disabled
    await parts.throttle.finish(reservation, succeeded=ok)
    if not ok or user is None:
        parts.metrics.logins_refused.inc()
        return None
    if parts.passwords.needs_rehash(user.password_hash):
        rehashed = await parts.passwords.hash(password, owners=owners)
        await parts.users.set_password_hash(user.id, rehashed)
        user = replace(user, password_hash=rehashed)
    return user


def _count_throttled(parts: AuthComponents, refused: OAuthError) -> None:
    if refused.status == 429:
        parts.metrics.logins_throttled.inc()


async def still_valid(parts: AuthComponents, checked: User) -> bool:
    """After a grant was recorded: whether the password it was checked against still
    stands. A password change or disable that ran meanwhile took its snapshot of the
    user's grants before this one existed, so this grant must undo itself."""
    current = await parts.users.by_id(checked.id)
    return (
        current is not None
        and not current.disabled
        and current.password_hash == checked.password_hash
    )

"""Why `/ws` refuses a handshake (HTTP, before the upgrade) or closes a socket (close codes,
the table in docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from aiohttp import web


class CloseCode(IntEnum):
    """Why the server closed a socket, and what the client should do about it."""

    GOING_AWAY = 1001  # server shutting down: reconnect (to another instance)
    POLICY_VIOLATION = 1008  # rate limit exceeded persistently: back off before reconnecting
    MESSAGE_TOO_BIG = 1009  # a frame over the limit: do not resend it
    INTERNAL_ERROR = 1011  # a server fault: reconnect with backoff
    TRY_AGAIN_LATER = 1013  # overloaded or a slow consumer: reconnect later, read faster
    TOKEN_EXPIRED = 4001  # credential expired: refresh it and reconnect
    REVOKED = 4003  # credential revoked or user disabled: do not retry with it


@dataclass(frozen=True)
class Disconnect:
    """Why the server ends a socket: a close code and the reason sent with it. Every one the
    server uses is defined below, once (the table in docs/protocol.md)."""

    code: CloseCode
    reason: str

    @property
    def slow_consumer(self) -> bool:
        """Whatever is still queued for the peer is dropped, not flushed first."""
        return self.code == CloseCode.TRY_AGAIN_LATER


GOING_AWAY = Disconnect(CloseCode.GOING_AWAY, "server going away")
RATE_LIMITED = Disconnect(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
WRITE_FAILED = Disconnect(CloseCode.INTERNAL_ERROR, "write failed")
SLOW_CONSUMER = Disconnect(CloseCode.TRY_AGAIN_LATER, "slow consumer")
TOKEN_EXPIRED = Disconnect(CloseCode.TOKEN_EXPIRED, "token expired")
REVOKED = Disconnect(CloseCode.REVOKED, "credential revoked")


class AuthFailed(Exception):
    """The handshake is refused before the upgrade with this status and headers."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str]) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers

    def response(self) -> web.Response:
        return web.json_response(
            {"error": self.error, "error_description": self.description},
            status=self.status,
            headers=self.headers,
        )


def invalid_token(description: str = "the credential is invalid or expired") -> AuthFailed:
    return AuthFailed(
        401, "invalid_token", description, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


def no_credentials() -> AuthFailed:
    return AuthFailed(
        401, "unauthorized", "a credential is required", {"WWW-Authenticate": 'Bearer realm="chat"'}
    )


def forbidden_origin() -> AuthFailed:
    return AuthFailed(403, "forbidden_origin", "this Origin may not open /ws", {})


def duplicate_cookie() -> AuthFailed:
    return AuthFailed(400, "invalid_request", "the session cookie appears more than once", {})


def auth_unavailable() -> AuthFailed:
    return AuthFailed(
        503, "temporarily_unavailable", "the auth service is unavailable", {"Retry-After": "2"}
    )

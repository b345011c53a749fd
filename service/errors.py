"""Why `/ws` refuses a handshake (HTTP, before the upgrade) or closes a socket (close codes,
the table in docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class CloseCode(IntEnum):
    """Why the server closed a socket, and what the client should do about it."""

    GOING_AWAY = 1001  # server shutting down: reconnect (to another instance)
    POLICY_VIOLATION = 1008  # rate limit exceeded persistently: back off before reconnecting
    MESSAGE_TOO_BIG = 1009  # a frame over the limit: do not resend it
    INTERNAL_ERROR = 1011  # a server fault: reconnect with backoff
    TRY_AGAIN_LATER = 1013  # overloaded or a slow consumer: reconnect later, read faster
    TOKEN_EXPIRED = 4001  # credential expired: refresh it and reconnect
    REVOKED = 4003  # credential revoked or user disabled: do not retry with it
    DISCONNECTED = 4004  # disconnected by the server API: may reconnect


@dataclass(frozen=True)
class Disconnect:
    """Why the server ends a socket: a close code and the reason sent with it. Every one the
    server uses is defined below, once (the table in docs/protocol.md)."""

    code: int  # a CloseCode, or a code of another protocol's own (service/centrifugo)
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
DISCONNECTED = Disconnect(CloseCode.DISCONNECTED, "disconnected by the server")


class Refusal(Enum):
    """Why a handshake, or a credential, is refused. What each becomes on the wire (an HTTP
    status before the upgrade, an error frame after it) is decided at the edge."""

    NOT_AN_UPGRADE = "not_an_upgrade"
    NO_SUBPROTOCOL = "no_subprotocol"  # subprotocols offered without chat.v1
    DUPLICATE_COOKIE = "duplicate_cookie"
    NO_CREDENTIAL = "no_credential"
    INVALID_CREDENTIAL = "invalid_credential"  # bad, forged, expired, revoked, wrong kind
    FORBIDDEN_ORIGIN = "forbidden_origin"
    TOO_MANY_FOR_USER = "too_many_for_user"
    ADDRESS_BLOCKED = "address_blocked"  # too many refused credentials from one address
    SERVER_FULL = "server_full"
    AUTH_UNAVAILABLE = "auth_unavailable"  # the auth service could not answer: retry later
    UNAVAILABLE = "unavailable"  # Redis could not answer (the per-user count): retry later


class Refused(Exception):
    """A refusal: why, in words for the client, and in how many seconds to retry (if at all)."""

    def __init__(
        self, refusal: Refusal, description: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(description)
        self.refusal = refusal
        self.description = description
        self.retry_after = retry_after


def invalid_token(description: str = "the credential is invalid or expired") -> Refused:
    return Refused(Refusal.INVALID_CREDENTIAL, description)


def no_credentials() -> Refused:
    return Refused(Refusal.NO_CREDENTIAL, "a credential is required")


def forbidden_origin() -> Refused:
    return Refused(
        Refusal.FORBIDDEN_ORIGIN, "this Origin may not open /ws (it is not in CHAT_ALLOWED_ORIGINS)"
    )


def duplicate_cookie() -> Refused:
    return Refused(Refusal.DUPLICATE_COOKIE, "the session cookie appears more than once")


def auth_unavailable() -> Refused:
    return Refused(Refusal.AUTH_UNAVAILABLE, "the auth service is unavailable", retry_after=2)

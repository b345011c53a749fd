"""Close codes of `/ws` (the table in docs/protocol.md)."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Why the server closed a socket, and what the client should do about it."""

    GOING_AWAY = 1001  # server shutting down: reconnect (to another instance)
    POLICY_VIOLATION = 1008  # rate limit exceeded persistently: back off before reconnecting
    MESSAGE_TOO_BIG = 1009  # a frame over the limit: do not resend it
    INTERNAL_ERROR = 1011  # a server fault: reconnect with backoff
    TRY_AGAIN_LATER = 1013  # overloaded or a slow consumer: reconnect later, read faster
    TOKEN_EXPIRED = 4001  # credential expired: refresh it and reconnect
    REVOKED = 4003  # credential revoked or user disabled: do not retry with it

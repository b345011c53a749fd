"""How our close codes, and the adapter's own reasons to close, read in Centrifugo's terms
(its `disconnect.go`): codes 3000-3499 ask the SDK to reconnect, 3500-3999 tell it not to.
The table is docs/centrifugo.md's, "Disconnect codes"."""

from __future__ import annotations

from service.errors import CloseCode, Disconnect

# Ours -> Centrifugo's. 1009 stays: the SDKs know it as the transport's message size limit.
DISCONNECTS: dict[int, tuple[int, str]] = {
    CloseCode.GOING_AWAY: (3001, "shutdown"),
    CloseCode.POLICY_VIOLATION: (3013, "too many requests"),
    CloseCode.MESSAGE_TOO_BIG: (1009, "message too big"),
    CloseCode.INTERNAL_ERROR: (3004, "internal server error"),
    CloseCode.TRY_AGAIN_LATER: (3008, "slow"),
    CloseCode.TOKEN_EXPIRED: (3005, "connection expired"),
    CloseCode.REVOKED: (3500, "invalid token"),
    CloseCode.DISCONNECTED: (3011, "force reconnect"),
}

# Reasons only this protocol has to close a socket (their codes are Centrifugo's already).
NO_PONG = Disconnect(3012, "no pong")
INVALID_TOKEN = Disconnect(3500, "invalid token")
BAD_REQUEST = Disconnect(3501, "bad request")
STALE = Disconnect(3502, "stale")


def on_the_wire(disconnect: Disconnect) -> tuple[int, str]:
    return DISCONNECTS.get(disconnect.code, (disconnect.code, disconnect.reason))

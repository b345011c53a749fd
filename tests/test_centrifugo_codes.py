"""Every close code of ours has its Centrifugo disconnect code (docs/centrifugo.md's table),
and each keeps its promise about reconnecting."""

import pytest

from service.centrifugo import codes
from service.errors import CloseCode, Disconnect

# Centrifugo's rule (disconnect.go): 3000-3499 reconnect, 3500-3999 do not.
RECONNECTS = {
    CloseCode.GOING_AWAY: True,
    CloseCode.POLICY_VIOLATION: True,
    CloseCode.INTERNAL_ERROR: True,
    CloseCode.TRY_AGAIN_LATER: True,
    CloseCode.TOKEN_EXPIRED: True,
    CloseCode.REVOKED: False,
    CloseCode.DISCONNECTED: True,
}


@pytest.mark.parametrize("ours", list(CloseCode))
def test_every_close_code_is_translated(ours: CloseCode) -> None:
    code, reason = codes.on_the_wire(Disconnect(ours, "ours"))
    assert reason != "ours"
    if ours is CloseCode.MESSAGE_TOO_BIG:
        assert code == 1009  # the transport's own, which the SDKs know
        return
    assert 3000 <= code < 4000
    assert (code < 3500) is RECONNECTS[ours]


def test_the_adapters_own_disconnects_go_out_as_they_are() -> None:
    for disconnect in (codes.NO_PONG, codes.INVALID_TOKEN, codes.BAD_REQUEST, codes.STALE):
        assert codes.on_the_wire(disconnect) == (disconnect.code, disconnect.reason)

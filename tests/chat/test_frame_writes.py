"""Frames go out encoded by us, straight to the transport, when the socket allows it, and through
the public `send_frame` when it does not (the adapter's fallback): both deliver the same."""

from __future__ import annotations

import pytest

from common import aiohttp_adapter
from tests.chat.helpers import ChatUser, Stack, across_instances, receive_type, send


@pytest.mark.parametrize("fast", [True, False], ids=["raw frames", "send_frame"])
async def test_messages_reach_members_either_way(
    stack: Stack, alice: ChatUser, bob: ChatUser, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    monkeypatch.setattr(aiohttp_adapter, "RAW_WRITES", fast)
    sender, listener = await across_instances(stack, alice, bob, "lobby")
    for n in range(20):
        await send(sender, "lobby", f"m{n}")
    texts = [(await receive_type(listener, "message"))["text"] for _ in range(20)]
    assert texts == [f"m{n}" for n in range(20)]
    for ws in (sender, listener):
        await ws.close()

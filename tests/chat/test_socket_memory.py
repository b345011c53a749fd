"""What an idle socket keeps alive (issue 15's memory per connection): no frames of the
middlewares that have nothing to do for it once it is open."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.chat.helpers import ChatUser, Stack, connect


def _awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The files and functions of the coroutines `task` is suspended in, outermost first."""
    chain, awaited = [], task.get_coro()
    while awaited is not None and hasattr(awaited, "cr_code"):
        chain.append(f"{awaited.cr_code.co_filename}:{awaited.cr_code.co_qualname}")
        awaited = awaited.cr_await
    return chain


async def test_an_open_socket_holds_no_frame_of_the_body_or_api_error_middlewares(
    stack: Stack, alice: ChatUser
) -> None:
    ws = await connect(stack.a, alice.access_token)
    chains = [_awaiting(t) for t in asyncio.all_tasks()]
    [socket] = [c for c in chains if any(f.endswith("service/views.py:websocket") for f in c)]
    assert not [f for f in socket if "http_limits" in f or "api/errors" in f], socket
    await ws.close()

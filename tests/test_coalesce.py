"""The coalescer's contract: batches per loop turn, answers in order, errors per caller, a
failed batch every caller's, callers that went away left out or told to `abandoned`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from common.coalesce import Coalescer


class Sender:
    """Records each batch and answers with `answer`, or waits for `release` when gated."""

    def __init__(self, *, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not gated:
            self.release.set()
        self.sent = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.sent.set()
        await self.release.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_calls_in_one_turn_share_a_batch_and_each_gets_its_own_answer() -> None:
    send = Sender()
    coalesce: Coalescer[int, int] = Coalescer(send, max_batch=10, max_in_flight=1)
    answers = await asyncio.gather(*(coalesce(i) for i in (4, 1, 2, 6)), return_exceptions=True)
    assert send.batches == [[4, 1, 2, 6]]
    assert answers[0] == 40
    assert answers[2] == 20
    assert answers[3] == 60
    assert isinstance(answers[1], ValueError)
    assert str(answers[1]) == "odd 1"


async def test_batches_are_bounded_and_queue_behind_those_in_flight() -> None:
    send = Sender(gated=True)
    coalesce: Coalescer[int, int] = Coalescer(send, max_batch=2, max_in_flight=1)
    calls = [asyncio.create_task(coalesce(i)) for i in (0, 2, 4, 6, 8)]
    await send.sent.wait()
    assert send.batches == [[0, 2]]  # the rest wait for it
    send.release.set()
    assert await asyncio.gather(*calls) == [0, 20, 40, 60, 80]
    assert send.batches == [[0, 2], [4, 6], [8]]


async def test_a_batch_that_fails_fails_every_caller_in_it() -> None:
    async def broken(items: Sequence[int]) -> list[int | Exception]:
        raise ConnectionError("down")

    coalesce: Coalescer[int, int] = Coalescer(broken, max_batch=10, max_in_flight=1)
    answers = await asyncio.gather(coalesce(0), coalesce(2), return_exceptions=True)
    assert [type(a) for a in answers] == [ConnectionError, ConnectionError]
    # and the next batch is sent as usual
    with pytest.raises(ConnectionError):
        await coalesce(4)


async def test_a_caller_gone_before_the_send_is_left_out_one_gone_after_is_reported() -> None:
    send = Sender(gated=True)
    abandoned: list[tuple[int, int]] = []
    coalesce: Coalescer[int, int] = Coalescer(
        send, max_batch=10, max_in_flight=1, abandoned=lambda i, r: abandoned.append((i, r))
    )
    first = asyncio.create_task(coalesce(0))
    await send.sent.wait()
    gone_early = asyncio.create_task(coalesce(2))
    stays = asyncio.create_task(coalesce(4))
    await asyncio.sleep(0)  # one loop turn: both tasks run and queue behind the first batch
    gone_early.cancel()
    first.cancel()  # after its batch was sent
    send.release.set()
    assert await stays == 40
    assert send.batches == [[0], [4]]
    assert abandoned == [(0, 0)]
    await coalesce.drain()


def test_sizes_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Sender(), max_batch=0, max_in_flight=1)

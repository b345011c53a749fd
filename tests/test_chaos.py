"""`make chaos`, shortened: the stack as real processes under every fault of the full run
(docs/reliability.md), and the verdict's arithmetic on crafted histories."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from chaos.clients import Publisher, Reader
from chaos.verdict import judge

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("store", ["redis", "cluster"])
async def test_a_short_chaos_run_loses_duplicates_and_reorders_nothing(
    tmp_path: Path, store: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chaos",
        "--duration",
        "24",
        "--workdir",
        str(tmp_path),
        *(["--cluster"] if store == "cluster" else []),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 140)
    verdict = out.decode()
    assert process.returncode == 0, (verdict, err.decode()[-3000:])
    assert re.search(r"lost=0 duplicated=0 out_of_order=0 ", verdict), verdict
    if store == "cluster":  # every instance's link to every primary, and its event link
        assert re.search(r"chat_kills=3 pubsub_kills=1 \(links=\d+\) primary_kills=1 ", verdict)
    else:
        assert re.search(r"chat_kills=3 pubsub_kills=1 \(links=3\) redis_restarts=1 ", verdict)
    assert "stalled_readers_closed=2/2" in verdict
    assert verdict.rstrip().endswith("| PASS")


def _publisher(room: str, count: int) -> Publisher:
    publisher = Publisher("p", "t", [room], [], rate=1, text_size=10)
    publisher.acked = {(room, n): f"text {n}" for n in range(1, count + 1)}
    return publisher


def _reader(room: str, start: int, offsets: list[int], gaps: list[tuple[int, int]]) -> Reader:
    reader = Reader("r", "t", room, [], start=start, epoch="e", last=max(offsets, default=start))
    reader.received = [(n, f"text {n}") for n in offsets]
    reader.gaps = gaps
    if gaps:
        reader.last = max(reader.last or 0, *(last for _, last in gaps))
    return reader


def test_a_clean_history_is_clean() -> None:
    verdict = judge([_reader("a", 0, [1, 2, 3, 4], [])], [_publisher("a", 4)], set())
    assert (verdict.sent, verdict.delivered, verdict.clean, verdict.behind) == (4, 4, True, 0)


@pytest.mark.parametrize(
    ("offsets", "gaps", "short", "field", "count"),
    [
        ([1, 2, 4], [], False, "lost", 1),
        ([1, 2, 2, 3, 4], [], False, "duplicated", 1),
        ([1, 3, 2, 4], [], False, "out_of_order", 1),
        ([1, 4], [(2, 3)], False, "wrong_gaps", 2),  # lost although still in history
        ([1, 2, 3, 4], [(2, 3)], True, "wrong_gaps", 2),  # announced, yet delivered
        ([1, 4], [(2, 2)], True, "lost", 1),  # the range was not exact
    ],
)
def test_each_fault_in_a_history_is_counted(
    offsets: list[int], gaps: list[tuple[int, int]], short: bool, field: str, count: int
) -> None:
    reader = _reader("a", 0, offsets, gaps)
    verdict = judge([reader], [_publisher("a", 4)], {"a"} if short else set())
    assert getattr(verdict, field) == count
    assert not verdict.clean


def test_an_exact_gap_beyond_history_is_clean_and_counted() -> None:
    verdict = judge([_reader("a", 0, [1, 4], [(2, 3)])], [_publisher("a", 4)], {"a"})
    assert verdict.clean
    assert (verdict.gaps, verdict.gap_messages) == (1, 2)


def test_a_message_at_two_offsets_or_with_the_wrong_text_is_caught() -> None:
    twice = _publisher("a", 2)
    twice.acked[("a", 2)] = "text 1"  # one message stored twice
    assert judge([_reader("a", 0, [1, 2], [])], [twice], set()).duplicated >= 1
    reader = _reader("a", 0, [1, 2], [])
    reader.received[1] = (2, "something else")
    assert judge([reader], [_publisher("a", 2)], set()).out_of_order == 1


def test_a_reader_that_never_caught_up_is_behind() -> None:
    verdict = judge([_reader("a", 0, [1, 2], [])], [_publisher("a", 4)], set())
    assert (verdict.behind, verdict.lost) == (1, 2)

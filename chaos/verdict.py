"""What a chaos run proves: every reader's view of its room checked against what publishers
were acknowledged (docs/reliability.md states the guarantee)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from chaos.clients import Publisher, Reader


@dataclass
class Verdict:
    sent: int = 0  # messages acknowledged to publishers
    delivered: int = 0  # messages received by readers (each reader's copy counts)
    lost: int = 0  # expected by a reader, neither received nor announced as lost
    duplicated: int = 0  # received twice by one reader, or stored at two offsets
    out_of_order: int = 0  # received after a later one, or not the text stored at its offset
    gaps: int = 0  # gap frames with a range received
    gap_messages: int = 0  # messages those ranges cover
    wrong_gaps: int = 0  # a gap over messages still in history, a reset, or a bare gap
    behind: int = 0  # readers that never caught up with their room

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.wrong_gaps)

    def line(self) -> str:
        return (
            f"sent={self.sent} delivered={self.delivered} lost={self.lost} "
            f"duplicated={self.duplicated} out_of_order={self.out_of_order} "
            f"gaps_announced={self.gaps} ({self.gap_messages} messages beyond history, "
            f"{self.wrong_gaps} wrong)"
        )


def final_offsets(publishers: list[Publisher]) -> dict[str, int]:
    finals: dict[str, int] = {}
    for publisher in publishers:
        for room, offset in publisher.acked:
            finals[room] = max(finals.get(room, 0), offset)
    return finals


def judge(readers: list[Reader], publishers: list[Publisher], short_history: set[str]) -> Verdict:
    """`short_history`: rooms whose history is short enough that readers may lose messages
    for real (each such loss must have been announced with its exact range)."""
    verdict = Verdict()
    stored: dict[tuple[str, int], str] = {}
    for publisher in publishers:
        stored.update(publisher.acked)
        verdict.sent += len(publisher.acked)
    offsets_of_text = Counter(stored.values())
    verdict.duplicated += sum(count - 1 for count in offsets_of_text.values())
    finals = final_offsets(publishers)
    for reader in readers:
        _judge_reader(verdict, reader, stored, finals.get(reader.room, 0), short_history)
    return verdict


def _judge_reader(
    verdict: Verdict,
    reader: Reader,
    stored: dict[tuple[str, int], str],
    final: int,
    short_history: set[str],
) -> None:
    seen: set[int] = set()
    highest = 0
    for offset, text in reader.received:
        verdict.delivered += 1
        if offset in seen:
            verdict.duplicated += 1
            continue
        if offset < highest or stored.get((reader.room, offset), text) != text:
            verdict.out_of_order += 1
        seen.add(offset)
        highest = max(highest, offset)
    announced: set[int] = set()
    for first, last in reader.gaps:
        verdict.gaps += 1
        verdict.gap_messages += last - first + 1
        announced.update(range(first, last + 1))
    verdict.wrong_gaps += reader.odd_gaps
    if reader.room not in short_history:
        verdict.wrong_gaps += len(announced)  # everything here was still in history
    verdict.wrong_gaps += len(announced & seen)  # announced lost, yet delivered
    if reader.start is None or not reader.caught_up(final):
        verdict.behind += 1
    expected = set(range((reader.start or 0) + 1, final + 1))
    verdict.lost += len(expected - seen - announced)

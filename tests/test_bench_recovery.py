"""`make bench`'s scenarios for ours alone: the recovery storm and the presence churn.

How their figures are judged (target lines, printed with no reference in the run), and each
scenario end to end at a tiny size against both real services on a private Redis (the storm
really kills instance A; how its compiled subscribers count what they receive is
test_bench_loadgen_modes.py's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from bench import loadgen, run
from bench.presence_churn import presence_churn
from bench.recovery_storm import recovery_storm
from bench.systems import start, stop_processes


def storm(**changes: Any) -> dict[str, Any]:
    figures = {
        "subscribers": 10, "recovered": 10, "recovered_p99_ms": 900.0, "history_reads": 1,
        "lost": 0, "duplicated": 0, "gaps": 0, "not_recovered": 0,
    }  # fmt: skip
    return {**figures, **changes}


def churn(**changes: Any) -> dict[str, Any]:
    figures = {"lost": 0, "duplicated": 0, "send_errors": 0, "churners_failed": 0}
    return {**figures, **changes}


def verdicts(ours: dict[str, Any]) -> dict[str, bool]:
    return {target: met for target, met, _ in run.targets({"ours": ours})}


def test_the_storm_targets_are_printed_without_a_reference() -> None:
    assert all(verdicts({"recovery": storm(), "churn": churn()}).values())
    assert len(verdicts({"recovery": storm(), "churn": churn()})) == 4
    assert verdicts({"fanout": {}}) == {}  # the others still need the reference


def test_each_storm_target_misses_on_its_own_figure() -> None:
    for changes, missed in (
        ({"recovered_p99_ms": 2001.0}, "p99 <= 2 s"),
        ({"recovered": 9}, "p99 <= 2 s"),
        ({"recovered_p99_ms": None, "recovered": 0}, "p99 <= 2 s"),
        ({"history_reads": 2}, "one history read"),
        ({"lost": 1}, "0 lost"),
        ({"duplicated": 1}, "0 lost"),
        ({"gaps": 1}, "0 lost"),
        ({"not_recovered": 1}, "0 lost"),
    ):
        judged = verdicts({"recovery": storm(**changes)})
        failed = [t for t, met in judged.items() if not met]
        assert failed == [t for t in judged if missed in t], changes


def test_the_churn_target_misses_on_a_loss_or_a_failed_churner() -> None:
    for changes in ({"lost": 1}, {"duplicated": 1}, {"send_errors": 1}, {"churners_failed": 1}):
        assert not any(verdicts({"churn": churn(**changes)}).values()), changes


def test_both_scenarios_are_rows_of_the_table_and_dashes_for_other_systems() -> None:
    table = run.table({"ours": {"recovery": storm(), "churn": churn()}, "reference": {}})
    row = next(line for line in table.splitlines() if "history reads" in line)
    assert row.split("|")[2:4] == [" 1 ", " — "]
    assert {"churn", "recovery"} <= set(run.SCENARIOS)


async def test_the_storm_end_to_end_recovers_everyone_with_nothing_lost(
    redis_url: str, tmp_path: Path
) -> None:
    loadgen.build()
    system = await start("ours", redis_url, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            result = await recovery_storm(system, session, redis_url, 6)
        assert system.processes[0].poll() is not None  # A was killed
    finally:
        stop_processes([*system.processes, *system.helpers])
    assert result["recovered"] == 6, result
    assert result["recoveries_counted_by_b"] == 6, result
    assert result["history_reads"] <= 1, result
    assert result["messages"] > 0, result
    counted = ("lost", "duplicated", "gaps", "not_recovered", "subscribers_ended_early")
    assert [result[key] for key in counted] == [0] * len(counted), result
    assert (result["first_failure"], result["unparsed_frames"]) == (None, 0), result
    for figure in ("closed", "hello", "recovered"):  # each step after the one before it
        assert 0 < result[f"{figure}_p50_ms"] <= result[f"{figure}_p99_ms"], result
    assert result["closed_p50_ms"] <= result["hello_p50_ms"] <= result["recovered_p50_ms"]
    assert result["recovered_p99_ms"] <= result["recovered_max_ms"], result
    assert result["server_cpu"] > 0, result
    assert result["loadgen_cpu"] >= 0, result


async def test_the_churn_end_to_end_counts_joins_and_loses_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    loadgen.build()
    system = await start("ours", redis_url, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            result = await presence_churn(system, session, members=6, churners=2, seconds=1.0)
    finally:
        stop_processes([*system.processes, *system.helpers])
    assert result["joins"] > 0, result
    assert result["churners_failed"] == 0, result
    assert result["messages"] > 0, result
    assert result["p99_ms"] is not None, result
    assert (result["lost"], result["duplicated"], result["send_errors"]) == (0, 0, 0), result

"""`make bench`: every system, every scenario, one run, one machine; a table and a JSON file.

Server processes are pinned to core 0; Redis and the load generator (this process, which
publishes, and bench/loadgen's wsload, which connects and receives) to core 1. Each system
runs as two processes on one private Redis. Figures are compared with the bare reference. A
scenario is flagged when the load generator's core was nearly full and the servers' was not,
because then the generator, not the servers, set the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import auth_bench, auth_scenarios, loadgen, profiles, scenarios
from bench.peers import PEERS
from bench.presence_churn import churn_targets, presence_churn
from bench.recovery_storm import recovery_storm, recovery_targets
from bench.systems import CLIENT_ID, OURS, ROOT, Running, Store, start, store_for

SYSTEMS = (
    "reference", "ours", "ours-nohistory", "ours-nopresence", "ours-cluster", "socketio",
    "node-socketio", "channels",
)  # fmt: skip
DEFAULT_SYSTEMS = (
    "reference",
    "ours",
    "ours-nohistory",
    "ours-nopresence",
    "socketio",
    "node-socketio",
    "channels",
)
SCENARIOS: tuple[str, ...] = (
    "handshakes",
    "fanout",
    "latency",
    "idle",
    "slow",
    "churn",
    "recovery",
)
SCENARIOS += ("idle-fresh", "auth-core", "introspection")  # bench/auth_scenarios.py
OURS_ONLY = ("churn", "recovery")  # history and presence: ours alone has them
RESULTS = ROOT / "bench" / "results"
SATURATED = 0.9


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"handshakes": 200, "concurrency": 20, "subscribers": 50, "seconds": 2.0,
                "idle": 200, "slow_seconds": 3.0, "storm": 200, "churn_members": 500,
                "churners": 10, "churn_seconds": 3.0}  # fmt: skip
    return {"handshakes": 2000, "concurrency": 50, "subscribers": 500, "seconds": 10.0,
            "idle": 2000, "slow_seconds": 15.0, "storm": 1000, "churn_members": 5000,
            "churners": 50, "churn_seconds": 10.0}  # fmt: skip


async def ours_tokens(system: Running, session: aiohttp.ClientSession, count: int) -> list[str]:
    """`count` distinct access tokens of 50 users (each a first-time credential for the chat
    service)."""
    return await auth_bench.mint_tokens(system, session, count, users=50, prefix="bench")


async def bench_system(
    name: str,
    store: Store,
    logs: Path,
    size: dict[str, Any],
    reference: dict[str, Any],
    profile: set[str],
    wanted: set[str],
) -> dict[str, Any]:
    system = await start(name, store.url, logs, store.env)
    results: dict[str, Any] = {}
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            headers: scenarios.Headers = scenarios.no_credentials
            results.update(
                await auth_scenarios.before_others(name, system, session, size, wanted)
            )  # idle-fresh: before anything else touches the instance
            if name in OURS:
                print(f"  {name}: minting first-time credentials", flush=True)
                tokens = await ours_tokens(
                    system, session, size["handshakes"] + size["subscribers"] + 1
                )
                headers = scenarios.bearer(tokens)
                if "handshakes" in wanted:
                    results["handshakes_first_time"] = await scenarios.handshakes(
                        system, headers, size["handshakes"], size["concurrency"]
                    )  # from here on the same credentials are cached
            if "handshakes" in wanted:
                print(f"  {name}: handshakes", flush=True)
                async with profiles.recording(system, "handshakes", profile):
                    results["handshakes"] = await scenarios.handshakes(
                        system, headers, size["handshakes"], size["concurrency"]
                    )
            results.update(
                await auth_scenarios.after_handshakes(
                    name, system, session, size, wanted, profile, results
                )
            )
            if "fanout" in wanted:
                print(f"  {name}: fan-out", flush=True)
                before = store.publishes_sent()
                async with profiles.recording(system, "fanout", profile):
                    results["fanout"] = await scenarios.fan_out(
                        system,
                        session,
                        headers,
                        subscribers=size["subscribers"],
                        seconds=size["seconds"],
                        window=32,
                    )
                if store.cluster is not None:  # the cluster bus's work for the fan-out
                    after = store.publishes_sent()
                    results["fanout"]["cluster_bus_sent"] = {
                        kind: after[kind] - before[kind] for kind in after
                    }
                rate = 0.5 * (reference.get("fanout", results["fanout"])["msgs_per_s"])
            if "latency" in wanted:
                print(f"  {name}: latency at {rate:.0f} msg/s", flush=True)
                results["latency"] = await scenarios.fan_out(
                    system, session, headers, subscribers=size["subscribers"],
                    seconds=size["seconds"], window=1024, rate=rate,
                )  # fmt: skip
            if "idle" in wanted:
                print(f"  {name}: idle memory", flush=True)
                results["idle"] = await scenarios.idle_memory(
                    system, session, headers, size["idle"]
                )
            if "slow" in wanted:
                print(f"  {name}: the same load, nobody slow (baseline)", flush=True)
                results["slow_baseline"] = await scenarios.fan_out(
                    system, session, headers,
                    subscribers=size["subscribers"], seconds=size["slow_seconds"], window=1024,
                    rate=rate, slow=0, padding=1000,
                )  # fmt: skip
                print(f"  {name}: slow consumers", flush=True)
                async with profiles.recording(system, "slow", profile):
                    results["slow"] = await scenarios.fan_out(
                        system, session, headers,
                        subscribers=size["subscribers"], seconds=size["slow_seconds"],
                        window=1024, rate=rate, slow=max(1, size["subscribers"] // 100),
                        padding=1000,
                    )  # fmt: skip
            if name == "ours" and "churn" in wanted:
                print(f"  {name}: presence churn", flush=True)
                results["churn"] = await presence_churn(
                    system, session, members=size["churn_members"], churners=size["churners"],
                    seconds=size["churn_seconds"],
                )  # fmt: skip
            if name == "ours" and "recovery" in wanted:  # last: it kills instance A
                print(f"  {name}: recovery storm", flush=True)
                results["recovery"] = await recovery_storm(
                    system, session, store.url, size["storm"]
                )
    finally:
        system.stop()
    return results


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs; None when either figure is missing (wsload reports no percentile when
    nothing was received), and a target with no ratio is a miss."""
    if ours is None or theirs is None:
        return None
    return round(ours / theirs, 2) if theirs else float("nan")


def at_least(r: float | None, bound: float) -> bool:
    return r is not None and r >= bound


def at_most(r: float | None, bound: float) -> bool:
    return r is not None and r <= bound


def times(r: float | None) -> str:
    return "—" if r is None else f"{r} x"


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """Each target whose figures this run has (a run of some scenarios checks only those)."""
    ours, ref = results.get("ours"), results.get("reference")
    if not ours:
        return []
    checks = recovery_targets(ours) + churn_targets(ours)  # ours alone: no reference
    if not ref:
        return checks
    for check in (
        _fanout_targets,
        _cluster_targets,
        _handshake_targets,
        _latency_targets,
        _memory_targets,
        _slow_targets,
        auth_scenarios.targets,
    ):
        try:
            checks.extend(check(results, ours, ref))
        except KeyError:
            continue  # a scenario this run left out
    runs = [k for k in ("fanout", "latency", "slow") if k in ours]
    lost = sum(ours[k]["lost"] for k in runs)
    duplicated = sum(ours[k]["duplicated"] for k in runs)
    send_errors = sum(ours[k].get("send_errors", 0) for k in runs)
    if runs:
        checks.append(
            ("zero lost or duplicated messages (ours, every run)",
             lost == duplicated == send_errors == 0,
             f"lost {lost}, duplicated {duplicated}, send errors {send_errors}")
        )  # fmt: skip
    return checks


Figures = dict[str, Any]
Checks = list[tuple[str, bool, str]]


def _fanout_targets(results: dict[str, Figures], ours: Figures, ref: Figures) -> Checks:
    checks: Checks = []
    r = ratio(ours["fanout"]["deliveries_per_s"], ref["fanout"]["deliveries_per_s"])
    checks.append(("fan-out deliveries/s >= 1.0 x reference", at_least(r, 1.0), times(r)))
    if "fanout" in results.get("socketio", {}):
        s = ratio(
            ours["fanout"]["deliveries_per_s"], results["socketio"]["fanout"]["deliveries_per_s"]
        )
        checks.append(("fan-out deliveries/s >= 4 x python-socketio", at_least(s, 4), times(s)))
    if "fanout" in results.get("node-socketio", {}):
        n = ratio(
            ours["fanout"]["deliveries_per_s"],
            results["node-socketio"]["fanout"]["deliveries_per_s"],
        )
        ahead = n is not None and n > 1
        checks.append(("fan-out deliveries/s: ours ahead of Node Socket.IO", ahead, times(n)))
    return checks


def _cluster_targets(results: dict[str, Figures], ours: Figures, ref: Figures) -> Checks:
    """On the cluster: no classic PUBLISH on the cluster bus (room traffic is shard-local)."""
    bus = results["ours-cluster"]["fanout"]["cluster_bus_sent"]
    return [
        ("room publishes stay in their shard (cluster bus: no classic publish)",
         bus["publish"] == 0,
         f"publish {bus['publish']}, publishshard {bus['publishshard']} (to replicas)"),
    ]  # fmt: skip


def notes(results: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Figures reported without a target: the cluster's fan-out against one Redis (both on
    this machine, Redis's processes sharing one core: a ratio, not a scaling claim)."""
    cluster, ours = results.get("ours-cluster", {}), results.get("ours", {})
    if "fanout" in cluster and "fanout" in ours:
        c = ratio(cluster["fanout"]["deliveries_per_s"], ours["fanout"]["deliveries_per_s"])
        return [("fan-out on a local cluster (3+3 nodes) / on one Redis", times(c))]
    return []


def _handshake_targets(results: dict[str, Figures], ours: Figures, ref: Figures) -> Checks:
    h = ratio(ours["handshakes"]["conn_per_s"], ref["handshakes"]["conn_per_s"])
    failures = ours["handshakes"]["failures"]
    return [
        ("cached handshakes/s >= 0.8 x reference, none failed",
         at_least(h, 0.8) and failures == 0, f"{times(h)}, {failures} failed")
    ]  # fmt: skip


def _latency_targets(results: dict[str, Figures], ours: Figures, ref: Figures) -> Checks:
    p = ratio(ours["latency"]["p99_ms"], ref["latency"]["p99_ms"])
    return [("p99 at fixed load <= 1.5 x reference", at_most(p, 1.5), times(p))]


def _memory_targets(results: dict[str, Figures], ours: Figures, ref: Figures) -> Checks:
    m = ratio(ours["idle"]["kib_per_connection"], ref["idle"]["kib_per_connection"])
    return [("KiB per idle connection <= 1.25 x reference", at_most(m, 1.25), times(m))]


def _slow_targets(results: dict[str, Figures], ours: Figures, ref: Figures) -> Checks:
    slow = ours["slow"]
    closed = f"{slow['slow_closed']}/{slow['slow']} after {slow['slow_closed_after_s']} s"
    change = ratio(slow["p99_ms"], ours["slow_baseline"]["p99_ms"])
    return [
        ("slow consumers closed", slow["slow_closed"] == slow["slow"], closed),
        ("others' p99 with slow consumers within 20 %", at_most(change, 1.2), times(change)),
    ]


ROWS = [
    ("handshakes", "conn_per_s", "handshakes conn/s"),
    ("handshakes", "hello_p99_ms", "handshake p99 ms"),
    ("handshakes", "failures", "handshake failures"),
    ("handshakes_first_time", "conn_per_s", "first-time credentials conn/s"),
    ("fanout", "deliveries_per_s", "fan-out deliveries/s"),
    ("fanout", "p99_ms", "fan-out p99 ms"),
    ("fanout", "server_cpu", "fan-out: servers' core busy"),
    ("fanout", "loadgen_cpu", "fan-out: load generator's core busy (without Redis)"),
    ("fanout", "lost", "fan-out lost"),
    ("latency", "lost", "fixed-load lost (undelivered 15 s after the end)"),
    ("slow", "lost", "slow-consumer run: lost to readers"),
    ("latency", "p50_ms", "fixed-load p50 ms"),
    ("latency", "p99_ms", "fixed-load p99 ms"),
    ("latency", "p999_ms", "fixed-load p99.9 ms"),
    ("idle", "kib_per_connection", "KiB per idle connection"),
    ("slow_baseline", "p99_ms", "1 KB messages, nobody slow: p99 ms"),
    ("slow", "p99_ms", "same, 1 % stalled: the others' p99 ms"),
    ("slow", "rss_growth_kib", "slow-consumer run: RSS growth KiB"),
    ("slow", "slow_closed_after_s", "slow consumers closed after s"),
    ("churn", "joins_per_s", "presence churn: joins/s"),
    ("churn", "p99_ms", "presence churn: the staying members' p99 ms"),
    ("churn", "lost", "presence churn: lost to the staying members"),
    ("churn", "readers_closed", "presence churn: staying members closed by the server"),
    ("recovery", "recovered_p50_ms", "recovery storm: recovered p50 ms from the kill"),
    ("recovery", "recovered_p99_ms", "recovery storm: recovered p99 ms from the kill"),
    ("recovery", "hello_p99_ms", "recovery storm: hello on B p99 ms from the kill (new token)"),
    ("recovery", "history_reads", "recovery storm: history reads (1 room, 1 instance)"),
    ("recovery", "lost", "recovery storm: lost"),
]
ROWS += auth_scenarios.ROWS


def loadgen_bound(figures: dict[str, Any]) -> bool:
    """The load generator's core was full and the servers' was not: not a server figure."""
    return bool(
        figures.get("loadgen_cpu", 0) >= SATURATED and figures.get("server_cpu", 1) < SATURATED
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the `finally` blocks stop the servers and Redis


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    lines = [
        "| figure | " + " | ".join(names) + " | ours / reference |",
        "|---" * (len(names) + 2) + "|",
    ]
    for scenario, key, label in ROWS:
        cells, values = [], {}
        for name in names:
            value = results[name].get(scenario, {}).get(key)
            values[name] = value
            flag = " (loadgen-bound)" if loadgen_bound(results[name].get(scenario, {})) else ""
            cells.append("—" if value is None else f"{value}{flag}")
        ours, ref = values.get("ours"), values.get("reference")
        rel = (
            ratio(ours, ref)
            if isinstance(ours, int | float) and isinstance(ref, int | float) and ref
            else "—"
        )
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {rel} |")
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated subset of {', '.join(SYSTEMS)} (ours-nohistory, "
        "ours-nopresence: ours with history or presence off, to show what each costs)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", action="store_true", help="exactly --systems, no reference")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of "
        + ", ".join(SCENARIOS)
        + " (latency and slow need fanout; churn and recovery run for ours alone, recovery "
        "last, since it kills one of its instances)",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated scenarios (handshakes, fanout, slow, auth-core, introspection) "
        "to record with py-spy into bench/results/profiles; sampling slows the servers, so "
        "compare no figures of such a run",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    usable = os.sched_getaffinity(0)
    if not {0, 1} <= usable:
        print(
            "make bench needs CPUs 0 and 1: the servers are pinned to CPU 0, Redis and the load "
            f"generator to CPU 1; this process may use CPUs {sorted(usable)}",
            file=sys.stderr,
        )
        return 2
    wanted = [s for s in args.systems.split(",") if s]
    if set(wanted) - set(SYSTEMS):
        parser.error(f"--systems: no system named {', '.join(sorted(set(wanted) - set(SYSTEMS)))}")
    if "reference" not in wanted and not args.only:
        wanted.insert(0, "reference")  # every figure is read against it
    os.sched_setaffinity(0, {1})  # the load generator's core
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = RESULTS / "logs"
    logs.mkdir(exist_ok=True)
    size = sizes(args.quick)
    chosen = {s for s in args.scenarios.split(",") if s}
    if chosen - set(SCENARIOS):
        parser.error(f"--scenarios: no scenario named {', '.join(sorted(chosen - set(SCENARIOS)))}")
    if chosen & {"latency", "slow"} and "fanout" not in chosen:
        parser.error("--scenarios: latency and slow run at half the fan-out rate; add fanout")
    profile = {s for s in args.profile.split(",") if s}
    unknown = profile - {"handshakes", "fanout", "slow", "auth-core", "introspection"}
    if unknown:
        parser.error(f"--profile: no scenario named {', '.join(sorted(unknown))}")
    if profile:
        profiles.py_spy()
    try:
        for name in wanted:
            if name in PEERS:
                PEERS[name].argv()  # a peer that cannot start says so before the first system
    except RuntimeError as error:
        print(f"make bench: {error}", file=sys.stderr)
        return 2
    loadgen.build()
    results: dict[str, dict[str, Any]] = {}
    started = time.time()
    for name in [s for s in SYSTEMS if s in wanted]:
        print(f"{name}:", flush=True)
        with store_for(name, logs) as store:
            results[name] = await bench_system(
                name, store, logs, size, results.get("reference", {}), profile, chosen
            )
    checks = targets(results)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "sizes": size,
        "scenarios": sorted(chosen),
        "profiled": sorted(profile),
        "client_id": CLIENT_ID,
        "results": results,
        "targets": [{"target": t, "met": ok, "measured": m} for t, ok, m in checks],
    }
    # A profiled run's figures carry py-spy's sampling: never the latest results.
    output = RESULTS / ("profiled.json" if profile else "latest.json")
    output.write_text(json.dumps(report, indent=2))
    print()
    print(table(results))
    print()
    for target, ok, measured in checks:
        print(f"{'met ' if ok else 'MISS'}  {target}  {measured}")
    for figure, measured in notes(results) + auth_scenarios.notes(results):
        print(f"note  {figure}  {measured}")
    for name in results:
        for scenario in sorted(profile):
            files = sorted(profiles.PROFILES.glob(f"{name}-{scenario}-*.txt"))
            print(f"\n{name}, {scenario}: py-spy, {len(files)} processes")
            print(profiles.summary(profiles.read(files), top=15))
    if profile:
        print("\nProfiled run: py-spy's sampling slowed the servers; compare no figures of it.")
    print(f"\nJSON: {output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: servers and Redis are stopped
        sys.exit(130)

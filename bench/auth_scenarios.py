"""Issue 15's auth and memory scenarios as `make bench` runs them: what each system does for
`idle-fresh`, `auth-core` and `introspection`, their table rows, targets and notes.

**idle-fresh**: resident memory per idle connection on chat instance A right after it
started, before any other scenario has touched it (the `idle` scenario measures a process
warmed by the handshakes and fan-out before it); ours with one user per connection (distinct
users, each a first-time token), the others unauthenticated as always.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bench import auth_bench, profiles, scenarios
from bench.systems import OURS, Running

Figures = dict[str, Any]
Checks = list[tuple[str, bool, str]]
AUTH_USERS = 50  # as run.py's first-time tokens: many tokens per user, like real clients


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return round(ours / theirs, 2)


def _times(r: float | None) -> str:
    return "—" if r is None else f"{r} x"


async def before_others(
    name: str,
    system: Running,
    session: aiohttp.ClientSession,
    size: dict[str, Any],
    wanted: set[str],
) -> Figures:
    """`idle-fresh`, run before any other scenario so that instance A is fresh."""
    if "idle-fresh" not in wanted:
        return {}
    headers: scenarios.Headers = scenarios.no_credentials
    users = 0
    if name in OURS:
        print(f"  {name}: minting a token for each of {size['idle']} users", flush=True)
        tokens = await auth_bench.mint_tokens(
            system, session, size["idle"], users=size["idle"], prefix="fresh"
        )
        headers = scenarios.bearer(tokens)
        users = len(tokens)
    print(f"  {name}: idle memory on a fresh process", flush=True)
    figures = await scenarios.idle_memory(system, session, headers, size["idle"])
    figures["distinct_users"] = users
    return {"idle_fresh": figures}


async def after_handshakes(
    name: str,
    system: Running,
    session: aiohttp.ClientSession,
    size: dict[str, Any],
    wanted: set[str],
    profile: set[str],
    measured: Figures,
) -> Figures:
    """`auth-core` and `introspection` for ours; for the reference, `auth-core` needs its
    unauthenticated handshakes (measured here unless `measured` has them already)."""
    results: Figures = {}
    if name not in OURS:
        if name == "reference" and "auth-core" in wanted and "handshakes" not in measured:
            print(f"  {name}: handshakes", flush=True)
            results["handshakes"] = await scenarios.handshakes(
                system, scenarios.no_credentials, size["handshakes"], size["concurrency"]
            )
        return results
    if not {"auth-core", "introspection"} & wanted:
        return results
    print(f"  {name}: minting {size['handshakes']} tokens new to the chat service", flush=True)
    tokens = await auth_bench.mint_tokens(
        system, session, size["handshakes"], users=AUTH_USERS, prefix="authcore"
    )
    if "auth-core" in wanted:
        print(f"  {name}: first-time handshakes, auth on its own core", flush=True)
        async with profiles.recording(system, "auth-core", profile):
            results["first_time_auth_core"] = await auth_bench.first_time_auth_core(
                system, tokens, size["concurrency"]
            )
    if "introspection" in wanted:
        print(f"  {name}: introspection throughput of one auth process", flush=True)
        results["introspection"] = await auth_bench.introspection(
            system, tokens, size["seconds"], profile
        )
    return results


ROWS = [
    ("handshakes_first_time", "hello_p99_ms", "first-time credentials p99 ms"),
    ("first_time_auth_core", "conn_per_s", "first-time, auth on its own core: conn/s"),
    ("first_time_auth_core", "hello_p99_ms", "first-time, auth on its own core: p99 ms"),
    ("first_time_auth_core", "failures", "first-time, auth on its own core: failures"),
    ("first_time_auth_core", "core0_busy", "first-time, auth own core: chat core busy"),
    ("first_time_auth_core", "core1_busy", "first-time, auth own core: auth+Redis+loadgen core"),
    ("first_time_auth_core", "core0_others", "first-time, auth own core: core 0, other processes"),
    ("introspection", "requests_per_s", "auth /introspect requests/s (one process)"),
    ("introspection", "p99_ms", "auth /introspect p99 ms"),
    ("introspection", "auth_cpu_us_per_request", "auth CPU µs per introspection"),
    ("introspection", "failures", "auth /introspect failures"),
    ("introspection", "core0_others", "auth /introspect: core 0, other processes"),
    ("idle_fresh", "kib_per_connection", "KiB per idle connection, fresh process, distinct users"),
]


def targets(results: dict[str, Figures], ours: Figures, ref: Figures) -> Checks:
    """The targets of these scenarios whose figures this run has."""
    checks: Checks = []
    if "first_time_auth_core" in ours and "handshakes" in ref:
        first = ours["first_time_auth_core"]
        r = _ratio(first["conn_per_s"], ref["handshakes"]["conn_per_s"])
        checks.append(
            (
                "first-time handshakes >= 0.5 x the reference's unauthenticated ones "
                "(auth on its own core), none failed",
                r is not None and r >= 0.5 and first["failures"] == 0,
                f"{_times(r)}, {first['failures']} failed",
            )
        )
    if "idle_fresh" in ours and "idle_fresh" in ref:
        fresh, ref_fresh = ours["idle_fresh"], ref["idle_fresh"]
        m = _ratio(fresh["kib_per_connection"], ref_fresh["kib_per_connection"])
        checks.append(
            (
                "KiB per idle connection with distinct users on a fresh process "
                "<= 1.25 x the reference",
                m is not None and m <= 1.25,
                _times(m),
            )
        )
    return checks


def notes(results: dict[str, Figures]) -> list[tuple[str, str]]:
    """Figures without a target: the shared-core first-time ratio (the trade-off's other
    side), introspection throughput, and the warmed idle figure beside the fresh one."""
    ours, ref = results.get("ours", {}), results.get("reference", {})
    found: list[tuple[str, str]] = []
    if "handshakes_first_time" in ours and "handshakes" in ref:
        r = _ratio(ours["handshakes_first_time"]["conn_per_s"], ref["handshakes"]["conn_per_s"])
        found.append(
            ("first-time handshakes, auth sharing the servers' core / reference", _times(r))
        )
    if "introspection" in ours:
        i = ours["introspection"]
        found.append(
            (
                "introspection, one auth process on one core",
                f"{i['requests_per_s']} requests/s, {i['auth_cpu_us_per_request']} µs of auth "
                f"CPU each, p99 {i['p99_ms']} ms, {i['failures']} failed",
            )
        )
    if "idle" in ours and "idle" in ref:
        m = _ratio(ours["idle"]["kib_per_connection"], ref["idle"]["kib_per_connection"])
        found.append(
            ("KiB per idle connection on a warmed process, 50 users / reference", _times(m))
        )
    return found

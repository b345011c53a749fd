"""`make attack`: what four attacks from the security assessment do to one tree of this project.

    python -m bench.attack [--source DIR] [--label NAME] [--scenarios slow,revoke,...] [--quick]
    python -m bench.attack --compare LABEL,LABEL

Runs the services of `--source` (default: this repository; a checkout of any other commit
works the same, with this venv), each scenario on a fresh private stack started with the
services' default limits, and reports what it measured: one line per figure as it
comes, a table at the end, and everything in `bench/results/attack/<label>.json` (the
processes' logs in `bench/results/attack/<label>/`). `--compare` prints two such runs side by
side. The scenarios (see bench/README.md, "Attacks"):

- `slow` (finding 1): unfinished requests held open against the auth service and a chat
  instance;
- `revoke` (finding 2): a chat instance's introspection cache filled with made-up bearers,
  then one token revoked over and over;
- `frames` (finding 4): floods of pings, and of empty continuation frames;
- `handshakes` (finding 8): a flood of handshakes with made-up bearers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import attack_floods, attack_frames, attack_slow
from bench.attack_report import Figures, compare, table
from bench.attack_stack import PROCESSES, ROOT

RESULTS = ROOT / "bench" / "results" / "attack"
Scenario = Callable[[Path, Path, dict[str, Any], Figures], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {
    "slow": attack_slow.run,
    "revoke": attack_floods.revoke,
    "frames": attack_frames.run,
    "handshakes": attack_floods.handshakes,
}


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"slow_auth_connections": 600, "slow_chat_connections": 300, "fill": 2000,
                "revokes": 400, "pings": 60_000, "fragment_seconds": 3.0,
                "handshake_seconds": 5.0, "baseline": 1.0}  # fmt: skip
    return {"slow_auth_connections": 1500, "slow_chat_connections": 1000, "fill": 10_000,
            "revokes": 2000, "pings": 300_000, "fragment_seconds": 5.0,
            "handshake_seconds": 10.0, "baseline": 2.0}  # fmt: skip


def git(source: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.attack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", type=Path, default=ROOT, help="the tree to run")
    parser.add_argument("--label", help="names the results (default: the source's short commit)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes)")
    parser.add_argument("--compare", help="print saved runs side by side: LABEL,LABEL")
    args = parser.parse_args(argv)
    chosen = [s for s in args.scenarios.split(",") if s]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"--scenarios: no scenario named {', '.join(sorted(unknown))}")
    args.chosen = [s for s in SCENARIOS if s in chosen]
    args.source = args.source.resolve()
    if not args.compare:
        for package in ("auth_service", "service"):
            if not (args.source / package / "__main__.py").is_file():
                parser.error(f"--source: {args.source} has no {package}/__main__.py")
    if args.label is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.label):
        parser.error("--label: letters, digits, '_', '.' and '-' only")
    return args


async def run(args: argparse.Namespace, logs: Path, report: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGINT too, explicitly: a job started in the background inherits it as ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, main_task.cancel)
    size = report["sizes"]
    for name in args.chosen:
        print(f"{name}:", flush=True)
        figures = report["figures"][name] = Figures(name)
        started = time.monotonic()
        try:
            await SCENARIOS[name](args.source, logs, size, figures)
        except Exception as error:  # recorded, and the next scenario runs on a fresh stack
            figures.put("error", f"{type(error).__name__}: {error}")
        figures.put("scenario_seconds", round(time.monotonic() - started, 1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        files = [RESULTS / f"{label}.json" for label in args.compare.split(",") if label]
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            print(f"no saved run: {', '.join(missing)}", file=sys.stderr)
            return 2
        print(compare(files))
        return 0
    commit = git(args.source, "rev-parse", "HEAD")
    label = args.label or (commit[:7] if commit else args.source.name)
    logs = RESULTS / label
    logs.mkdir(parents=True, exist_ok=True)
    # Every held connection is a descriptor of this process too.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pinned = PROCESSES.pin()
    report: dict[str, Any] = {
        "label": label,
        "source": str(args.source),
        "commit": commit,
        "modified": bool(git(args.source, "status", "--porcelain", "--untracked-files=no")),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "quick": args.quick,
        "sizes": sizes(args.quick),
        "pinned": {"servers": "cpu 0", "redis and clients": "cpu 1"} if pinned else None,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "figures": {},
        "complete": False,
    }
    print(f"attacking {args.source} ({commit or 'not a git tree'}) as {label!r}; logs in {logs}")
    started = time.monotonic()
    status = 0
    try:
        asyncio.run(run(args, logs, report))
        report["complete"] = True
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: stopping what was started", file=sys.stderr)
        status = 130
    finally:
        PROCESSES.stop_all()
        report["seconds"] = round(time.monotonic() - started, 1)
        output = RESULTS / f"{label}.json"
        output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table({label: report["figures"]}))
    print(f"\nJSON: {output}" + ("" if report["complete"] else " (incomplete run)"))
    return status


if __name__ == "__main__":
    sys.exit(main())

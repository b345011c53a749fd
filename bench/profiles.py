"""py-spy profiles of the servers during a scenario, and a summary of where their time went.

`make bench BENCH_ARGS="--profile fanout"` attaches `py-spy record` (250 samples/s, raw
collapsed stacks) to every server process of every system while that scenario runs, and
writes `bench/results/profiles/<system>-<scenario>-<pid>.txt`. Sampling pauses each process
briefly, so a profiled run's figures are not the ones to compare; the report says so.

`python -m bench.profiles FILE...` prints, for the samples of those files (one system's
processes together): the share of each function's own time, the share of time inside each
function (callees included), and the share of the hot-path costs the issue names.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from bench.systems import ROOT, Running

PROFILES = ROOT / "bench" / "results" / "profiles"
RATE = 250


def calls(names: str, modules: str) -> re.Pattern[str]:
    """Frames of any of the `|`-separated function names in any of the `|`-separated modules."""
    return re.compile(rf"^({names}) \(({modules})")


# The costs the issue asks about, each counted as the time inside the frames that match.
CATEGORIES: dict[str, re.Pattern[str]] = {
    "JSON encoding and decoding": calls("encode|decode|iterencode|dumps|loads|raw_decode", "json/"),
    "writing frames (aiohttp writer, transport)": calls(
        "_write_websocket_frame|send_frame|send_str|send_bytes|send_json|_send_frame|write",
        "aiohttp/|asyncio/",
    ),
    "reading frames (aiohttp reader)": calls(
        "feed_data|_feed_data|parse_frame|receive|_handle_frame", "aiohttp/"
    ),
    "compression": calls(".*", "zlib|aiohttp/compression_utils"),
    "task and timer creation": calls(
        "create_task|ensure_future|call_later|call_at|call_soon|__init__", "asyncio/(tasks|events)"
    ),
    "Redis reply parsing": calls(".*", "redis/_parsers|redis/connection|hiredis"),
}


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("--profile needs py-spy: pip install -e '.[bench]'")
    return found


@contextlib.asynccontextmanager
async def recording(system: Running, scenario: str, wanted: set[str]) -> AsyncIterator[None]:
    """Records every server process of `system` while the block runs, if `scenario` is
    wanted; py-spy itself runs on the load generator's core, which this process is pinned to."""
    if scenario not in wanted:
        yield
        return
    PROFILES.mkdir(parents=True, exist_ok=True)
    for stale in PROFILES.glob(f"{system.name}-{scenario}-*.txt"):
        stale.unlink()  # an earlier run's processes: the summary reads this run's files only
    recorders: list[asyncio.subprocess.Process] = []
    try:  # every recorder started is stopped, even if a later one cannot attach
        for pid in system.server_pids():
            recorders.append(
                await asyncio.create_subprocess_exec(
                    py_spy(),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(RATE),
                    "--format",
                    "raw",
                    "--output",
                    str(PROFILES / f"{system.name}-{scenario}-{pid}.txt"),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
            )
        for recorder in recorders:  # until each says it is sampling, so the scenario is covered
            assert recorder.stdout is not None
            line = await asyncio.wait_for(recorder.stdout.readline(), timeout=30)
            if b"Sampling process" not in line:
                raise RuntimeError(f"py-spy could not attach: {line.decode(errors='replace')}")
        yield
    finally:
        for recorder in recorders:
            if recorder.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited on its own
                    recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for recorder in recorders:
            await recorder.communicate()


# A pool thread whose innermost Python frame is `_worker` is blocked in `work_queue.get()`
# waiting for work; py-spy does not always see such a thread as idle (on this machine it
# reported the auth service's idle hashing threads as half its samples), so it is dropped.
WAITING = re.compile(r"^_worker \(.*concurrent/futures/thread\.py")


def read(paths: list[Path]) -> Counter[tuple[str, ...]]:
    """Collapsed stacks ("frame;frame;... count") from py-spy's raw output, summed, less
    thread-pool workers waiting for work."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            frames, _, count = line.rpartition(" ")
            if frames and count.isdigit():
                stack = tuple(frames.split(";"))
                if not WAITING.search(stack[-1]):
                    stacks[stack] += int(count)
    return stacks


def short(frame: str) -> str:
    """`name (path/to/module.py:123)` without the line number and the site-packages prefix."""
    frame = re.sub(r":\d+\)$", ")", frame)
    return re.sub(r"\(.*?(site-packages|lib/python3\.\d+)/", "(", frame)


def summary(stacks: Counter[tuple[str, ...]], top: int) -> str:
    total = sum(stacks.values())
    if not total:
        return "no samples"
    own: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [short(frame) for frame in stack]
        own[frames[-1]] += count
        for frame in set(frames):
            inside[frame] += count
        for name, pattern in CATEGORIES.items():
            if any(pattern.search(frame) for frame in frames):
                categories[name] += count
    lines = [f"{total} samples ({total / RATE:.1f} s of CPU at {RATE} samples/s)", ""]
    lines.append("hot-path costs (time inside, callees included):")
    lines.extend(f"  {100 * n / total:5.1f} %  {name}" for name, n in categories.most_common())
    lines.append("")
    lines.append(f"own time, top {top}:")
    lines.extend(f"  {100 * n / total:5.1f} %  {frame}" for frame, n in own.most_common(top))
    lines.append("")
    lines.append(f"time inside (callees included), top {top}:")
    lines.extend(f"  {100 * n / total:5.1f} %  {frame}" for frame, n in inside.most_common(top))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(summary(read(args.files), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

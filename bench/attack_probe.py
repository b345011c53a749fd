"""A measuring client in a process of its own: what the victims of an attack go through.

The attacker runs flat out in the parent; a probe timed on the same event loop would report
the attacker's own delays as the server's. So `Probe.start()` runs this module as a child
(`python -m bench.attack_probe`), one of three kinds:

- `healthz`: `GET url` every `interval` s on a new connection (from `local_addr` if given;
  fixed rate: a slow answer does not delay the next probe), each bounded by `timeout`;
- `wsping`: one WebSocket (Bearer `token`), `{"op":"ping","ref":N}` every `interval` s, the
  round trip to the `pong` carrying that ref; error frames, and a close by the server,
  are counted by type and code;
- `handshake`: every `interval` s a new WebSocket from `local_addr`, the time to its `hello`.

Protocol on the pipes: one JSON line of configuration in; `{"event": "ready"}` out after the
first success; then `stop` in, and one JSON line out with the samples and exits. Samples are
`[start, seconds or null, outcome]` with `start` on the machine's monotonic clock, which the
parent shares, so it can cut them into its own phases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from bench.attack_stack import PROCESSES, ROOT

Sample = tuple[float, float | None, str]
STOP_GRACE = 3.0  # seconds the child may take to settle its last samples after `stop`


async def _every(
    interval: float, stop: asyncio.Event, attempt: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Starts `attempt` every `interval` s until `stop`; then waits for those in flight."""
    running: set[asyncio.Task[None]] = set()
    due = time.monotonic()
    while not stop.is_set():
        task = asyncio.create_task(attempt())
        running.add(task)
        task.add_done_callback(running.discard)
        due = max(due + interval, time.monotonic())  # missed slots are skipped, not bunched
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), due - time.monotonic())
    if running:
        await asyncio.wait(running)


async def _healthz(config: dict[str, Any], ready: asyncio.Event, stop: asyncio.Event,
                   samples: list[Sample], events: Counter[str]) -> None:  # fmt: skip
    local = config.get("local_addr")
    connector = aiohttp.TCPConnector(
        force_close=True, limit=0, local_addr=None if local is None else (local, 0)
    )
    async with aiohttp.ClientSession(connector=connector) as session:

        async def attempt() -> None:
            started = time.monotonic()
            try:
                async with asyncio.timeout(config["timeout"]), session.get(config["url"]) as r:
                    await r.read()
                    status = r.status
            except TimeoutError:
                samples.append((started, None, "timeout"))
                return
            except (aiohttp.ClientError, OSError) as error:
                samples.append((started, None, type(error).__name__))
                return
            elapsed = time.monotonic() - started
            samples.append((started, elapsed if status == 200 else None, str(status)))
            if status == 200:
                ready.set()

        await _every(config["interval"], stop, attempt)


async def _handshake(config: dict[str, Any], ready: asyncio.Event, stop: asyncio.Event,
                     samples: list[Sample], events: Counter[str]) -> None:  # fmt: skip
    connector = aiohttp.TCPConnector(
        force_close=True, limit=0, local_addr=(config["local_addr"], 0)
    )
    headers = {"Authorization": f"Bearer {config['token']}"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def attempt() -> None:
            started = time.monotonic()
            elapsed: float | None = None
            outcome = "no hello"
            try:
                async with (
                    asyncio.timeout(config["timeout"]),
                    session.ws_connect(config["url"], headers=headers) as ws,
                ):
                    message = await ws.receive()
                    if message.type == aiohttp.WSMsgType.TEXT and '"hello"' in message.data:
                        elapsed, outcome = time.monotonic() - started, "ok"
            except aiohttp.WSServerHandshakeError as error:
                outcome = f"status {error.status}"
            except TimeoutError:
                # A hello that came in time counts, however long the close took after it.
                outcome = "ok" if elapsed is not None else "timeout"
            except (aiohttp.ClientError, OSError) as error:
                outcome = "ok" if elapsed is not None else type(error).__name__
            samples.append((started, elapsed, outcome))
            if elapsed is not None:
                ready.set()

        await _every(config["interval"], stop, attempt)


async def _wsping(config: dict[str, Any], ready: asyncio.Event, stop: asyncio.Event,
                  samples: list[Sample], events: Counter[str]) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {config['token']}"}
    sent: dict[int, float] = {}
    drained = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(10):
            ws = await session.ws_connect(config["url"], headers=headers)
            hello = await ws.receive()
        if hello.type != aiohttp.WSMsgType.TEXT or '"hello"' not in hello.data:
            await ws.close()
            raise RuntimeError(f"no hello: {hello.type} {hello.data!r}")

        async def read() -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame.get("type") == "pong" and frame.get("ref") in sent:
                    started = sent.pop(frame["ref"])
                    samples.append((started, time.monotonic() - started, "pong"))
                    ready.set()
                    if not sent:
                        drained.set()
                else:
                    events[f"{frame.get('type')}:{frame.get('code', '')}"] += 1
            if not stop.is_set():  # the server closed it, not our own close at the end
                events[f"closed:{ws.close_code}"] += 1
                stop.set()

        reader = asyncio.create_task(read())
        refs = iter(range(1, 1 << 62))

        async def attempt() -> None:
            ref = next(refs)
            drained.clear()
            sent[ref] = time.monotonic()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"op": "ping", "ref": ref}))

        try:
            await _every(config["interval"], stop, attempt)
            if sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(drained.wait(), STOP_GRACE - 1)
            samples.extend((started, None, "no pong") for started in sent.values())
        finally:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
                async with asyncio.timeout(1):
                    await ws.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


MODES = {"healthz": _healthz, "handshake": _handshake, "wsping": _wsping}


async def _child() -> None:
    config = json.loads(await asyncio.to_thread(sys.stdin.readline))
    samples: list[Sample] = []
    events: Counter[str] = Counter()
    ready, stop = asyncio.Event(), asyncio.Event()
    run = asyncio.create_task(MODES[config["mode"]](config, ready, stop, samples, events))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    error = None
    if ready.is_set():
        print(json.dumps({"event": "ready"}), flush=True)
        # "stop", or end of input (the parent is gone): either way, finish.
        await asyncio.wait(
            {run, asyncio.create_task(asyncio.to_thread(sys.stdin.readline))},
            return_when=asyncio.FIRST_COMPLETED,
        )
        stop.set()
    try:
        await run
    except Exception as failure:  # reported to the parent, which records it
        error = f"{type(failure).__name__}: {failure}"
    result = {"event": "result", "samples": samples, "events": events, "error": error}
    print(json.dumps(result), flush=True)


class ProbeError(RuntimeError):
    """The probe did not start measuring, or did not report."""


class Probe:
    """The parent's handle on a probe process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._process = process
        self._stdin, self._stdout = process.stdin, process.stdout

    @classmethod
    async def start(cls, config: dict[str, Any], log: Path, ready_within: float = 20.0) -> Probe:
        process = PROCESSES.spawn(
            [sys.executable, "-m", "bench.attack_probe"],
            PROCESSES.load_core,
            log,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        probe = cls(process)
        try:
            probe._stdin.write(json.dumps(config).encode() + b"\n")
            probe._stdin.flush()
            line = await probe._line(ready_within)
            if line.get("event") != "ready":
                raise ProbeError(f"{config['mode']} probe did not start: {line}; see {log}")
        except BaseException:
            PROCESSES.stop([process])
            raise
        return probe

    async def _line(self, within: float) -> dict[str, Any]:
        # A blocking read in a thread; if it times out, stopping the process ends the read.
        raw = await asyncio.wait_for(asyncio.to_thread(self._stdout.readline), within)
        return json.loads(raw) if raw else {"event": "eof"}

    async def stop(self, within: float = 15.0) -> tuple[list[Sample], dict[str, int]]:
        """Its samples and counted events; raises ProbeError if it reported a failure."""
        try:
            with contextlib.suppress(BrokenPipeError):
                self._stdin.write(b"stop\n")
                self._stdin.flush()
            result = await self._line(within)
        finally:
            with contextlib.suppress(BrokenPipeError):
                self._stdin.close()
            PROCESSES.stop([self._process])
            self._stdout.close()
        if result.get("event") != "result":
            raise ProbeError(f"the probe reported nothing: {result}")
        samples = [(s[0], s[1], s[2]) for s in result["samples"]]
        if result["error"] and not samples:
            raise ProbeError(result["error"])
        return samples, dict(result["events"])


def _rank(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


def summarize(samples: list[Sample], start: float | None = None, end: float | None = None
              ) -> dict[str, Any]:  # fmt: skip
    """Samples started in [start, end): count, failures by outcome, percentiles in ms."""
    chosen = [
        s for s in samples if (start is None or s[0] >= start) and (end is None or s[0] < end)
    ]
    times = sorted(1000 * s[1] for s in chosen if s[1] is not None)
    failures = Counter(s[2] for s in chosen if s[1] is None)
    summary: dict[str, Any] = {"count": len(chosen), "failed": sum(failures.values())}
    if failures:
        summary["failures"] = dict(failures)
    for name, fraction in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        summary[name] = round(_rank(times, fraction), 1) if times else None
    summary["max_ms"] = round(times[-1], 1) if times else None
    return summary


if __name__ == "__main__":
    asyncio.run(_child())

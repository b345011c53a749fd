"""Scenario `frames` (finding 4): WebSocket frames that a per-message rate limit never sees.

(a) One attacker socket writes empty pings as fast as the connection takes them; measured:
the pongs it gets back, whether and when the server closes it (and with which code), the chat
process's CPU, and another user's ping round trip (`{"op":"ping"}` every 20 ms, in a probe
process of its own). The attack phase lasts until the attacker is closed or 15 s, and at
least 3 s, so that the bystander is timed over a comparable window either way.
(b) Four attacker sockets each open a text message (`{`, FIN=0) and then send empty
continuation frames without end; measured: CPU, which sockets were closed, the bystander.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.attack_measure import CpuMeter, sleep_until
from bench.attack_probe import Probe, summarize
from bench.attack_report import Figures, Part
from bench.attack_stack import Stack, describe, start_stack, users_with_tokens
from bench.attack_ws import CONTINUATION, PING, TEXT, RawWebSocket, client_frame

BATCH = 4096  # frames per write: the attacker's own cost per frame stays far below the server's
PING_PHASE_MAX, PING_PHASE_MIN = 15.0, 3.0
FRAGMENT_SOCKETS = 4


@dataclass
class Flood:
    """How far one socket's flood got (kept up to date, so a cancelled flood still counts)."""

    frames: int = 0
    finished_at: float | None = None


async def flood_pings(ws: RawWebSocket, count: int, progress: Flood) -> None:
    frame = client_frame(PING)
    while progress.frames < count:
        batch = min(BATCH, count - progress.frames)
        if not await ws.send(frame * batch):
            return
        progress.frames += batch
    progress.finished_at = time.monotonic()


async def flood_fragments(ws: RawWebSocket, seconds: float, progress: Flood) -> None:
    chunk = client_frame(CONTINUATION, fin=False) * BATCH
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):  # a server that stops reading blocks the write
            if not await ws.send(client_frame(TEXT, b"{", fin=False)):
                return
            while await ws.send(chunk):
                progress.frames += BATCH
    progress.finished_at = time.monotonic()


async def _bystander(stack: Stack, token: str, log: Path, baseline: float) -> tuple[Probe, float]:
    probe = await Probe.start(
        {"mode": "wsping", "url": stack.ws_url(), "token": token, "interval": 0.02}, log
    )
    started = time.monotonic()
    await asyncio.sleep(baseline)  # the bystander's round trip before the attack
    return probe, started


def _ended(sockets: list[RawWebSocket], since: float) -> dict[str, Any]:
    gone = [ws for ws in sockets if ws.ended.is_set()]
    return {
        "closed": len(gone),
        "close_codes": dict(Counter(str(ws.close_code or ws.how_ended) for ws in gone)),
        "closed_after_s": [round((ws.ended_at or since) - since, 3) for ws in gone],
    }


async def _close_all(sockets: list[RawWebSocket], pumps: list[asyncio.Task[None]]) -> None:
    for pump in pumps:
        pump.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)
    await asyncio.gather(*(ws.aclose() for ws in sockets))


async def ping_flood(source: Path, logs: Path, size: dict[str, Any], out: Part) -> None:
    stack = await start_stack(source, logs, "frames-a", chats=1)
    probe: Probe | None = None
    sockets: list[RawWebSocket] = []
    pumps: list[asyncio.Task[None]] = []
    try:
        tokens = await users_with_tokens(stack.auth_url, ["attacker", "bystander"])
        probe, baseline_started = await _bystander(
            stack, tokens["bystander"], logs / "frames-a.probe.log", size["baseline"]
        )
        ws = await RawWebSocket.open(stack.chat_ports[0], tokens["attacker"])
        sockets.append(ws)
        pumps.append(asyncio.create_task(ws.pump()))
        cpu = CpuMeter({"chat": stack.chats[0]})
        started = time.monotonic()
        progress = Flood()
        writer = asyncio.create_task(flood_pings(ws, size["pings"], progress))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.ended.wait(), PING_PHASE_MAX)
        await sleep_until(started + PING_PHASE_MIN)
        ended = time.monotonic()
        out.put("cpu", cpu.read())
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        out.put("pings", size["pings"])
        out.put("pings_written", progress.frames)
        if progress.finished_at is not None:
            out.put("write_seconds", round(progress.finished_at - started, 2))
        out.put("frames_received", dict(sorted(ws.counts.items())))
        out.put("pongs", ws.counts["pong"])
        # How long the server kept answering: past the end of the writes, it was catching up.
        last = ws.last_frame_at - started
        out.put("last_frame_after_s", round(last, 3) if last > 0 else None)
        out.put("attacker", _ended([ws], started))
        out.put("phase_seconds", round(ended - started, 2))
        samples, events = await probe.stop()
        probe = None
        out.put("bystander.baseline", summarize(samples, baseline_started, started))
        out.put("bystander.during_attack", summarize(samples, started, ended))
        out.put("bystander.errors_and_closes", events)
        out.put("process", describe(stack.chats[0]))
    finally:
        if probe is not None:
            with contextlib.suppress(Exception):
                await probe.stop()
        await _close_all(sockets, pumps)
        stack.stop()


async def fragment_flood(source: Path, logs: Path, size: dict[str, Any], out: Part) -> None:
    stack = await start_stack(source, logs, "frames-b", chats=1)
    probe: Probe | None = None
    sockets: list[RawWebSocket] = []
    pumps: list[asyncio.Task[None]] = []
    try:
        tokens = await users_with_tokens(stack.auth_url, ["attacker", "bystander"])
        probe, baseline_started = await _bystander(
            stack, tokens["bystander"], logs / "frames-b.probe.log", size["baseline"]
        )
        for _ in range(FRAGMENT_SOCKETS):
            sockets.append(await RawWebSocket.open(stack.chat_ports[0], tokens["attacker"]))
            pumps.append(asyncio.create_task(sockets[-1].pump()))
        cpu = CpuMeter({"chat": stack.chats[0]})
        started = time.monotonic()
        floods = [Flood() for _ in sockets]
        await asyncio.gather(
            *(
                flood_fragments(ws, size["fragment_seconds"], f)
                for ws, f in zip(sockets, floods, strict=True)
            )
        )
        await sleep_until(started + size["fragment_seconds"])  # a socket closed early: wait on
        ended = time.monotonic()
        out.put("cpu", cpu.read())
        out.put("sockets", len(sockets))
        out.put("seconds", round(ended - started, 2))
        out.put("continuations_written", sum(f.frames for f in floods))
        out.put("attackers", _ended(sockets, started))
        samples, events = await probe.stop()
        probe = None
        out.put("bystander.baseline", summarize(samples, baseline_started, started))
        out.put("bystander.during_attack", summarize(samples, started, ended))
        out.put("bystander.errors_and_closes", events)
        out.put("process", describe(stack.chats[0]))
    finally:
        if probe is not None:
            with contextlib.suppress(Exception):
                await probe.stop()
        await _close_all(sockets, pumps)
        stack.stop()


async def run(source: Path, logs: Path, size: dict[str, Any], out: Figures) -> None:
    for part, measure in (("pings", ping_flood), ("continuations", fragment_flood)):
        try:
            await measure(source, logs, size, out.under(part))
        except Exception as error:  # recorded: the other part still runs
            out.put(f"{part}.error", f"{type(error).__name__}: {error}")

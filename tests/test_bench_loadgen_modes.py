"""wsload's `storm` and `churn` modes (bench/loadgen/storm.c, churn.c) count exactly.

Scripted servers stand in for the chat instances (a unit seam: the end-to-end runs against
the real services are in test_bench_recovery.py, and see nothing go wrong). In the storm each
of three subscribers receives a known sequence of frames, with duplicates, skipped offsets, a
gap, a `recovered:false`, a refusal and keys of the same names nested inside other values,
and the figures must come out as counted by hand; B also records each `since` it was sent.
In the churn the server counts the join and leave cycles it answered, refuses one churner and
leaves another unanswered.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bench import loadgen
from bench.loadgen.churn import Churners
from bench.loadgen.storm import Storm

ROOM = "storm-room"
EPOCH = 'e"1'  # a quote in it: the epoch must go back to B exactly as A spelt it
TRAP = {"id": "u", "type": "message", "offset": 999}  # nested keys of the names it reads

Handler = Callable[[web.Request], Awaitable[web.WebSocketResponse]]


def message(offset: int) -> dict[str, Any]:
    text = f'{offset} {time.monotonic_ns()} {{"type":"gap","offset":1}}'
    return {"type": "message", "room": ROOM, "offset": offset, "from": TRAP, "text": text}


# What each subscriber (by its token) receives on A after joining at offset 10, and on B
# after its join with since.
ON_A = {"t0": [11, 12, 12, 14], "t1": [11], "t2": []}
ON_B: dict[str, list[dict[str, Any]]] = {
    "t0": [
        {"type": "joined", "room": ROOM, "epoch": EPOCH, "offset": 16, "recovered": True},
        {"type": "member_left", "room": ROOM, "user": TRAP},
        message(15), message(16), message(17),
    ],
    "t1": [
        {"type": "joined", "room": ROOM, "epoch": EPOCH, "offset": 17, "recovered": False},
        {"type": "gap", "room": ROOM, "from": 12, "to": 13},
        message(14), message(15), message(16), message(17),
    ],
    "t2": [{"type": "error", "code": "forbidden", "message": "no \"entry\"", "ref": None}],
}  # fmt: skip


async def serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"ws://{host}:{port}/ws"


async def opened(request: web.Request) -> tuple[web.WebSocketResponse, str, dict[str, Any]]:
    """The upgrade, the hello, and the subscriber's join frame."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_json({"type": "hello", "user": TRAP, "connection_id": "c"})
    join = json.loads(await ws.receive_str())
    return ws, request.headers["Authorization"].removeprefix("Bearer "), join


@pytest.fixture
async def instances() -> AsyncIterator[tuple[list[str], asyncio.Event, dict[str, Any]]]:
    """A and B's URLs; setting the event kills A (closes every socket, two with a close
    frame, one with a bare FIN); what B was sent as `since`, by token."""
    kill, sinces = asyncio.Event(), {}

    async def on_a(request: web.Request) -> web.WebSocketResponse:
        ws, token, _ = await opened(request)
        await ws.send_json({"type": "member_joined", "room": ROOM, "user": TRAP})
        await ws.send_json({"type": "joined", "room": ROOM, "meta": TRAP, "epoch": EPOCH,
                            "offset": 10})  # fmt: skip
        for offset in ON_A[token]:
            await ws.send_json(message(offset))
        await kill.wait()
        if token == "t1":
            assert request.transport is not None
            request.transport.close()
        else:
            await ws.close()
        return ws

    async def on_b(request: web.Request) -> web.WebSocketResponse:
        ws, token, join = await opened(request)
        sinces[token] = join.get("since")
        await ws.ping()
        for frame in ON_B[token]:
            await ws.send_json(frame)
        async for _ in ws:  # until wsload goes
            pass
        return ws

    (runner_a, url_a), (runner_b, url_b) = await serve(on_a), await serve(on_b)
    try:
        yield [url_a, url_b], kill, sinces
    finally:
        await runner_a.cleanup()
        await runner_b.cleanup()


async def test_the_storm_counts_what_each_subscriber_received(
    instances: tuple[list[str], asyncio.Event, dict[str, Any]],
) -> None:
    urls, kill, sinces = instances
    headers = [{"Authorization": f"Bearer t{i}"} for i in range(3)]
    async with Storm(urls, ROOM, headers) as storm:
        await storm.start()
        killed_ns = time.monotonic_ns()
        kill.set()
        cpu = await storm.killed(killed_ns, deadline=10)
        result = await storm.finish(17, deadline=10)
    assert sinces == {
        "t0": {"offset": 14, "epoch": EPOCH},
        "t1": {"offset": 11, "epoch": EPOCH},
        "t2": {"offset": 10, "epoch": EPOCH},
    }
    # lost: t0 skipped 13; t1 skipped 12 and 13; t2 never had 11..17
    expected = {"recovered": 2, "ended_early": 1, "not_recovered": 1, "lost": 10,
                "duplicated": 1, "gaps": 1, "unparsed_frames": 0}  # fmt: skip
    assert {key: result[key] for key in expected} == expected, result
    assert "subscriber 2 on B: refused:" in result["first_failure"]
    assert '\\"entry\\"' in result["first_failure"]  # the frame, as it came
    for figure in ("recovered", "closed", "hello"):
        assert 0 <= result[f"{figure}_p50_ms"] <= result[f"{figure}_p99_ms"] < 10_000, result
    assert result["recovered_p99_ms"] <= result["recovered_max_ms"]
    assert result["storm_cpu_s"] == cpu >= 0


async def test_the_churn_counts_answered_cycles_and_failed_churners() -> None:
    cycles = {"t0": 0, "t1": 0, "t2": 0}
    waiting = {"t1": False, "t2": False}  # t1 was refused; t2 waits for a `left`, forever
    moving = asyncio.Event()  # t0 churned a while, and both of those happened

    async def on_churn(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "user": TRAP})
        token = request.headers["Authorization"].removeprefix("Bearer ")
        async for frame in ws:
            op = json.loads(frame.data)["op"]
            if op == "join" and token == "t1" and cycles[token] == 3:
                await ws.send_json({"type": "error", "code": "forbidden", "message": "no"})
            elif op == "join":
                await ws.send_json({"type": "joined", "room": ROOM, "epoch": "e", "offset": 1})
                await ws.send_json({"type": "member_joined", "room": ROOM, "user": TRAP})
                await ws.send_json({**message(2), "from": {"type": "left"}})
            elif token != "t2":
                cycles[token] += 1
                await ws.send_json({"type": "left", "room": ROOM})
            waiting["t2"] = waiting["t2"] or (token == "t2" and op == "leave")
            waiting["t1"] = waiting["t1"] or (token == "t1" and cycles["t1"] == 3 and op == "join")
            if cycles["t0"] >= 5 and waiting["t1"] and waiting["t2"]:
                moving.set()
        return ws

    runner, url = await serve(on_churn)
    try:
        headers = [{"Authorization": f"Bearer t{i}"} for i in range(3)]
        async with Churners([url, url], ROOM, headers) as churners:
            await churners.start()
            await asyncio.wait_for(moving.wait(), 10)
            result = await churners.stop(deadline=1)
    finally:
        await runner.cleanup()
    assert result["joins"] == cycles["t0"] + 3, (result, cycles)
    assert result["failed"] == 2, result
    assert result["first_failure"].startswith("churner 1: refused: {"), result


def test_wsload_compiles_without_a_warning(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None
    subprocess.run(
        [compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", str(tmp_path / "w"),
         *map(str, loadgen.SOURCES)],
        check=True,
    )  # fmt: skip

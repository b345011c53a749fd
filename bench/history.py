"""What rooms with history cost (`make bench-history`): the append, measured in Redis, and a
1,000-socket `since` storm against a real chat instance.

1. **append**: 20,000 messages sent one after another straight to a private Redis, once with
   history (the publish script: offset, append, trim, publish) and once without (one
   PUBLISH), with one subscriber listening; the round trip per message and Redis's own time
   per call (`INFO commandstats`).
2. **since storm**: 1,000 sockets (first-time credentials, then cached) in one room of one
   instance; 500 messages; every socket closed; then all 1,000 reconnect at once and join with
   `since` 250 behind. The time until every one has its `joined` (`recovered:true`) and all 250
   replayed messages, and how many history reads Redis served for it (`XREVRANGE` calls).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.run import ours_tokens
from bench.systems import redis_server, start, stop_processes
from service.native.frames import message_parts
from service.rooms.history import RoomHistory

APPENDS = 20_000
STORM = 1_000
MESSAGES, BEHIND = 500, 250


async def _commandstats(client: aioredis.Redis) -> dict[str, dict[str, float]]:
    stats: dict[str, dict[str, float]] = await client.info("commandstats")
    return stats


def _calls(before: dict[str, Any], after: dict[str, Any], command: str) -> tuple[int, float]:
    key = f"cmdstat_{command}"
    calls = after.get(key, {}).get("calls", 0) - before.get(key, {}).get("calls", 0)
    usec = after.get(key, {}).get("usec", 0) - before.get(key, {}).get("usec", 0)
    return int(calls), usec


async def append_cost(redis_url: str) -> dict[str, float]:
    client = aioredis.Redis.from_url(redis_url)
    history = RoomHistory(client, idempotency_ttl=600)
    listener = client.pubsub()
    await listener.subscribe("chat:room:bench")
    sender = {"id": "u1", "username": "bench"}
    results: dict[str, float] = {}
    try:
        for mode in ("history", "plain"):
            before = await _commandstats(client)
            started = time.perf_counter()
            for n in range(APPENDS):
                frame = message_parts("bench", f"m{n}", sender, "x" * 100, time.time())
                if mode == "history":
                    await history.publish(
                        "bench", "chat:room:bench", frame, message_id=f"m{n}", size=1000, ttl=86400
                    )
                else:
                    await client.publish("chat:room:bench", frame[0] + frame[1])
            elapsed = time.perf_counter() - started
            after = await _commandstats(client)
            command = "evalsha" if mode == "history" else "publish"
            calls, usec = _calls(before, after, command)
            results[f"{mode}: round trip µs per message"] = round(elapsed / APPENDS * 1e6, 1)
            results[f"{mode}: Redis µs per message ({command})"] = round(usec / max(calls, 1), 2)
    finally:
        await listener.aclose()
        await client.aclose()
    return results


async def _open(
    session: aiohttp.ClientSession, url: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
    await ws.receive_json()  # hello
    return ws


async def _until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads((await ws.receive()).data)
        if frame.get("type") == kind:
            return frame


async def since_storm(logs: Path) -> dict[str, float]:
    with redis_server(logs, core=None) as redis_url:
        system = await start("ours", redis_url, logs)
        try:
            url = system.urls[0].replace("http", "ws", 1)
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                tokens = await ours_tokens(system, session, STORM)
                sockets = await asyncio.gather(*(_open(session, url, t) for t in tokens))
                for ws in sockets:
                    await ws.send_json({"op": "join", "room": "storm"})
                joined = [await _until(ws, "joined") for ws in sockets]
                epoch, start_offset = joined[0]["epoch"], joined[0]["offset"]
                publisher = sockets[0]
                for n in range(MESSAGES):
                    await publisher.send_json({"op": "send", "room": "storm", "text": f"m{n}"})
                    await _until(publisher, "ack")
                for ws in sockets:
                    await ws.close()
                since = {"offset": start_offset + MESSAGES - BEHIND, "epoch": epoch}
                sockets = await asyncio.gather(*(_open(session, url, t) for t in tokens))
                client = aioredis.Redis.from_url(redis_url)
                before = await _commandstats(client)
                started = time.perf_counter()

                async def resume(ws: aiohttp.ClientWebSocketResponse) -> bool:
                    await ws.send_json({"op": "join", "room": "storm", "since": since})
                    answer = await _until(ws, "joined")
                    for _ in range(BEHIND):
                        await _until(ws, "message")
                    return bool(answer.get("recovered"))

                recovered = await asyncio.gather(*(resume(ws) for ws in sockets))
                elapsed = time.perf_counter() - started
                after = await _commandstats(client)
                await client.aclose()
                for ws in sockets:
                    await ws.close()
            reads, _ = _calls(before, after, "xrevrange")
            return {
                "sockets": STORM,
                "replayed per socket": BEHIND,
                "recovered": sum(recovered),
                "time to all recovered and replayed, s": round(elapsed, 3),
                "history reads (XREVRANGE) for the storm": reads,
            }
        finally:
            stop_processes([*system.processes, *system.helpers])


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-history-") as workdir:
        logs = Path(workdir)
        with redis_server(logs, core=None) as redis_url:
            print("append cost:", flush=True)
            for label, value in (await append_cost(redis_url)).items():
                print(f"  {label}: {value}", flush=True)
        print("since storm:", flush=True)
        for label, value in (await since_storm(logs)).items():
            print(f"  {label}: {value}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

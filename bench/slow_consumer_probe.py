"""Diagnostic for the open slow-consumer finding in docs/performance.md.

Starts our stack as real processes, one publisher and one subscriber that stops reading,
sends 4 KB messages at 130/s and prints, once a second, whether the server has closed the
stalled subscriber and what the kernel holds on the server side (`ss`). In-process the same
client is closed with 1013 after about 6 s; here it has not been. Run:
`.venv/bin/python -m bench.slow_consumer_probe`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from bench.run import bearer, ours_tokens
from bench.systems import redis_server, start


async def main(logs: Path) -> None:
    with redis_server(logs) as url:
        system = await start("ours", url, logs)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                headers = bearer(await ours_tokens(system, session, 2))
                publisher = system.client(session, 0)
                await publisher.connect(headers(0))
                await publisher.join("probe")
                stalled = system.client(session, 0)
                await stalled.connect(headers(1))
                await stalled.join("probe")
                stalled.stop_reading()
                port = system.urls[0].split(":")[2].split("/")[0]
                started = time.monotonic()
                for seq in range(130 * 20):
                    await await_ack(publisher, f"{seq} " + "x" * 4000)
                    if seq % 130 == 0:
                        ss = await asyncio.create_subprocess_exec(
                            "ss", "-tn", f"sport = :{port}", stdout=asyncio.subprocess.PIPE
                        )
                        out, _ = await ss.communicate()
                        queues = out.decode().splitlines()[1:]
                        print(
                            f"{time.monotonic() - started:5.1f}s "
                            f"closed={stalled.server_has_closed()} "
                            f"server sockets (state recv-q send-q): "
                            f"{[' '.join(line.split()[:3]) for line in queues]}",
                            flush=True,
                        )
                    await asyncio.sleep(1 / 130)
        finally:
            system.stop()


async def await_ack(publisher: object, text: str) -> None:
    acked = await publisher.send("probe", text)  # type: ignore[attr-defined]
    await acked


if __name__ == "__main__":
    LOGS = Path(__file__).resolve().parent / "results" / "logs"
    LOGS.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(LOGS))

"""Diagnostic: a stalled subscriber of our stack, watched until the server drops it.

Starts our stack as real processes, one publisher and one subscriber that stops reading,
sends 4 KB messages at 130/s and prints, once a second, whether the server has closed the
stalled subscriber (read from the kernel's TCP state) and what the kernel holds on the server
side (`ss`). It found why the benchmark's stalled subscribers were never closed; that is fixed
(docs/performance.md, "Slow consumers: what the benchmark found, and the fix"), and the probe
now shows the stalled client reset about 8 s in. Run:
`.venv/bin/python -m bench.slow_consumer_probe`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp

from bench.clients import BenchClient
from bench.run import ours_tokens
from bench.scenarios import bearer
from bench.systems import redis_server, start

TCP_ESTABLISHED = 1  # the first byte of struct tcp_info is the connection state


class StalledClient(BenchClient):
    """A slow consumer: joins, then stops draining its socket (TCP backpressure builds up)."""

    def stop_reading(self) -> None:
        if self._reader is not None:
            self._reader.cancel()

    def server_has_closed(self) -> bool:
        """Read from the kernel, so it works for a client that stopped reading: the TCP
        connection is no longer ESTABLISHED (the server sent FIN or RST)."""
        if self._ws is None:
            return False
        connection = self._ws._response.connection
        transport = connection.transport if connection is not None else None
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return True
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        return bool(state != TCP_ESTABLISHED)


async def main(logs: Path) -> None:
    with redis_server(logs) as url:
        system = await start("ours", url, logs)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                headers = bearer(await ours_tokens(system, session, 2))
                publisher = system.client(session, 0)
                await publisher.connect(headers(0))
                await publisher.join("probe")
                stalled = StalledClient(session, system.urls[0])
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


async def await_ack(publisher: BenchClient, text: str) -> None:
    acked = await publisher.send("probe", text)
    await acked


if __name__ == "__main__":
    LOGS = Path(__file__).resolve().parent / "results" / "logs"
    LOGS.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(LOGS))

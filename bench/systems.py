"""The systems under test: how to start each as two server processes on one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.clients import BenchClient, SocketIOClient
from bench.peers import PEERS
from chaos.local_cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = "0"  # every server process; Redis and the load generator get the other core
REDIS_CORE = "1"
CLIENT_ID, CLIENT_SECRET = "chat", "bench-client-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(argv: list[str], core: str | None) -> list[str]:
    return argv if core is None else ["taskset", "-c", core, *argv]


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    """SIGTERM to each that still runs, then SIGKILL to any not gone `timeout` s later."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds_of(pids: list[int]) -> float:
    """User and system CPU the processes have used (fields 14 and 15 of /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Running:
    """A started system: its two instances' URLs and processes."""

    name: str
    urls: list[str]
    processes: list[subprocess.Popen[bytes]]
    client_class: type[BenchClient]
    auth_url: str | None = None
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def pid(self, instance: int) -> int:
        return self.processes[instance].pid

    def server_pids(self) -> list[int]:
        """Every process on the server core (ours: both instances and the auth service)."""
        return [process.pid for process in [*self.processes, *self.helpers]]

    @property
    def protocol(self) -> str:
        """How bench/loadgen speaks to it: JSON frames, or Socket.IO over Engine.IO."""
        return "socketio" if issubclass(self.client_class, SocketIOClient) else "json"

    def client(self, session: aiohttp.ClientSession, instance: int) -> BenchClient:
        return self.client_class(session, self.urls[instance])

    def stop(self) -> None:
        stop_processes([*self.processes, *self.helpers])


async def wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float = 30) -> None:
    """Polls until the port accepts connections: waiting on a process start, not an event."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {deadline} s")


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            pinned(argv, SERVER_CORE), env=env, stdout=handle, stderr=handle, cwd=ROOT
        )


# Ours as it ships (rooms keep history and presence), with history off (at most once, as
# before), with presence off (no member events, no presence writes on join and leave), and
# as it ships on a local Redis Cluster (3 primaries, 3 replicas) instead of one Redis. The
# two "off" rows make what history and presence cost on the hot path visible.
OURS: dict[str, dict[str, str]] = {
    "ours": {},
    "ours-nohistory": {"CHAT_NAMESPACES": '{"": {"history_size": 0}}'},
    "ours-nopresence": {"CHAT_NAMESPACES": '{"": {"presence": false}}'},
    "ours-cluster": {},
}
ON_CLUSTER = {"ours-cluster"}


@dataclass
class Store:
    """Where a system keeps its state: one Redis, or a local cluster (then `cluster`)."""

    url: str
    env: dict[str, str] = field(default_factory=dict)
    cluster: LocalCluster | None = None

    def publishes_sent(self) -> dict[str, int]:
        """A cluster's bus counters, summed over its nodes: classic PUBLISH copies to every
        node (`publish`), sharded ones only within the shard (`publishshard`)."""
        totals = {"publish": 0, "publishshard": 0}
        for node in self.cluster.nodes if self.cluster else []:
            info = node.client().execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
            for kind in totals:
                totals[kind] += int(info.get(f"cluster_stats_messages_{kind}_sent", 0))
        return totals


@contextlib.contextmanager
def store_for(name: str, logs: Path) -> Iterator[Store]:
    """The system's Redis: a private redis-server, or for `ours-cluster` a local cluster;
    either on the load generator's core."""
    if name not in ON_CLUSTER:
        with redis_server(logs) as url:
            yield Store(url)
        return
    cluster = LocalCluster()
    cluster.start()
    try:
        for node in cluster.nodes:
            assert node.process is not None
            os.sched_setaffinity(node.process.pid, {int(REDIS_CORE)})
        first = cluster.nodes[0].port
        yield Store(f"redis://127.0.0.1:{first}/0", {"REDIS_CLUSTER_NODES": cluster.seeds}, cluster)
    finally:
        cluster.stop()


def ours_env(redis_url: str, auth_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",  # no access log: the peers log nothing per request either
        "AUTH_PORT": str(auth_port),
        "AUTH_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET}",
        "AUTH_ARGON2_TIME_COST": "1",
        "AUTH_ARGON2_MEMORY_KIB": "1024",
        "AUTH_ARGON2_PARALLELISM": "1",
        "AUTH_REGISTER_MAX_PER_ADDRESS": "1000000",
        "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
        # It also logs in many times, concurrently, as a few users from one address.
        "AUTH_LOGIN_MAX_FAILURES": "1000000",
        "AUTH_LOGIN_MAX_ATTEMPTS": "1000000",
        "AUTH_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "1000000",
        "AUTH_MAX_GRANTS_PER_USER": "1000000",
        "AUTH_MAX_PENDING_HASHES": "1000",
        "AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "CHAT_CLIENT_ID": CLIENT_ID,
        "CHAT_CLIENT_SECRET": CLIENT_SECRET,
        # The load generator is one client address sending as fast as it can: lift the
        # per-connection and per-user limits that protect a real deployment from that.
        "CHAT_RATE_PER_SECOND": "1000000",
        "CHAT_RATE_BURST": "1000000",
        "CHAT_MAX_CONNECTIONS_PER_USER": "1000000",
        "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    }


async def start(
    name: str, redis_url: str, logs: Path, store_env: dict[str, str] | None = None
) -> Running:
    """Both instances of `name` (and ours' auth service), listening; on any failure on the way,
    every process started so far is stopped. `store_env`: ours on a cluster."""
    ports = [free_port(), free_port()]
    started: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        started.append(_spawn(argv, env, log))
        return started[-1]

    try:
        if name in OURS:
            auth_port = free_port()
            env = {**ours_env(redis_url, auth_port), **OURS[name], **(store_env or {})}
            auth = spawn([sys.executable, "-m", "auth_service"], env, logs / f"{name}-auth.log")
            await wait_listening(auth_port, auth)
            processes = [
                spawn(
                    [sys.executable, "-m", "service"],
                    {**env, "CHAT_PORT": str(port)},
                    logs / f"{name}-{i}.log",
                )
                for i, port in enumerate(ports)
            ]
            running = Running(
                name,
                [f"http://127.0.0.1:{port}/ws" for port in ports],
                processes,
                BenchClient,
                auth_url=f"http://127.0.0.1:{auth_port}",
                helpers=[auth],
            )
        else:
            peer = PEERS[name]
            processes = [
                spawn(
                    peer.argv(),
                    {**os.environ, "PORT": str(port), "REDIS_URL": redis_url},
                    logs / f"{name}-{i}.log",
                )
                for i, port in enumerate(ports)
            ]
            client = SocketIOClient if peer.protocol == "socketio" else BenchClient
            urls = [f"http://127.0.0.1:{port}{peer.path}" for port in ports]
            running = Running(name, urls, processes, client)
        for port, process in zip(ports, processes, strict=True):
            await wait_listening(port, process)
    except BaseException:
        stop_processes(started)
        raise
    return running


@contextlib.contextmanager
def redis_server(logs: Path, core: str | None = "1") -> Iterator[str]:
    """A private redis-server, on the load generator's core unless `core` is None; its
    log and working directory are `logs`."""
    port = free_port()
    process = subprocess.Popen(
        pinned(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(logs),
                "--logfile",
                str(logs / "redis.log"),
            ],
            core,
        )
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.2),
            ):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {port}; see {logs}/redis.log")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_processes([process])

"""The processes `make chaos` runs and breaks: redis-server (AOF) or, with `--cluster`, a local
Redis Cluster (3 primaries, 3 replicas), the auth service and the chat instances, each on a
port of its own that it keeps across restarts."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from chaos.local_cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID, CLIENT_SECRET = "chat", "chaos-run-chat-secret-7d1e0c55"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# Variables of the caller's shell that must not change what runs.
FOREIGN_PREFIXES = ("AUTH_", "CHAT_", "REDIS_", "APP_ENV", "LOG_LEVEL")
# Rooms in `short:` keep 40 messages, so a reader closed for a while loses some for real
# and must be told exactly which; every other room keeps the default 1,000.
NAMESPACES = '{"": {}, "short": {"history_size": 40}}'


class StackError(RuntimeError):
    """A process did not start, or did not become ready in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and redis-server)
                self.argv,
                stdout=handle,
                stderr=handle,
                env=self.env or None,
                cwd=ROOT,
                start_new_session=True,  # Ctrl-C reaches the run, which stops them in order
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(signum)

    async def wait_exit(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.wait, STOP_TIMEOUT)

    def stop(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ChaosStack:
    def __init__(self, workdir: Path, instances: int, *, cluster: bool = False) -> None:
        self.workdir = workdir
        redis_port, auth_port = free_port(), free_port()
        self.cluster = LocalCluster() if cluster else None
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.auth_url = f"http://127.0.0.1:{auth_port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
        env = {
            **base,
            "REDIS_URL": self.redis_url,
            "AUTH_PORT": str(auth_port),
            "AUTH_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET}",
            "AUTH_ARGON2_TIME_COST": "1",
            "AUTH_ARGON2_MEMORY_KIB": "1024",
            "AUTH_ARGON2_PARALLELISM": "1",
            "AUTH_URL": self.auth_url,
            "CHAT_CLIENT_ID": CLIENT_ID,
            "CHAT_CLIENT_SECRET": CLIENT_SECRET,
            "CHAT_NAMESPACES": NAMESPACES,
            # A reader that stops reading is noticed within seconds, not minutes.
            "CHAT_SOCKET_SNDBUF": "8192",
            "CHAT_WRITE_TIMEOUT": "2",
            # ...and by that alone: no heartbeat timeout ends a stall first.
            "CHAT_HEARTBEAT": "300",
        }
        self._env = env  # the cluster's seeds join it once the cluster is up
        self.redis = Service(
            "redis",
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(workdir)],
            redis_port,
            workdir / "redis.log",
        )  # fmt: skip
        self.auth = Service(
            "auth", [sys.executable, "-m", "auth_service"], auth_port, workdir / "auth.log", env
        )
        self.chats = []
        for index in range(instances):
            port = free_port()
            self.chats.append(
                Service(
                    f"chat{index + 1}",
                    [sys.executable, "-m", "service"],
                    port,
                    workdir / f"chat{index + 1}.log",
                    {**env, "CHAT_PORT": str(port)},
                )
            )

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{chat.port}/ws" for chat in self.chats]

    async def start(self) -> None:
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.start)
            for service in (self.auth, *self.chats):
                service.env["REDIS_CLUSTER_NODES"] = self.cluster.seeds
        else:
            self.redis.spawn()
            await _listening(self.redis)
        self.auth.spawn()
        await _ready(self.auth, "/healthz")
        for chat in self.chats:
            chat.spawn()
        for chat in self.chats:
            await _ready(chat, "/readyz")

    async def kill_chat(self, index: int) -> None:
        """SIGKILL: no close frames, no clean-up; then the same instance starts again."""
        chat = self.chats[index]
        chat.signal(signal.SIGKILL)
        await chat.wait_exit()
        chat.spawn()
        await _ready(chat, "/readyz")

    async def restart_redis(self) -> None:
        """A clean restart: SIGTERM (Redis writes its AOF), then the same port and files."""
        self.redis.signal(signal.SIGTERM)
        await self.redis.wait_exit()
        self.redis.spawn()
        await _listening(self.redis)

    async def kill_primary(self) -> int:
        """A cluster's: SIGKILL a random primary; once its replica has taken over, start it
        again (it rejoins as a replica). Returns its port."""
        assert self.cluster is not None
        victim = random.choice(await asyncio.to_thread(self.cluster.primaries))
        await asyncio.to_thread(self.cluster.kill, victim)
        await asyncio.to_thread(self.cluster.wait_covered)
        await asyncio.to_thread(self.cluster.restart, victim)
        return victim.port

    async def kill_pubsub(self) -> int:
        """CLIENT KILL TYPE pubsub (on every node of a cluster): every instance's subscriber
        links are cut at once."""
        ports = [n.port for n in self.cluster.nodes] if self.cluster else [self.redis.port]
        killed = 0
        for port in ports:
            client = aioredis.Redis(port=port)
            try:
                killed += int(await client.client_kill_filter(_type="pubsub"))
            finally:
                await client.aclose()
        return killed

    def stop(self) -> None:
        for service in (*self.chats, self.auth, self.redis):
            service.stop()
        if self.cluster is not None:
            self.cluster.stop()


async def _ready(service: Service, path: str) -> None:
    """Polls `path` until it answers 200: a process start has no event to wait on."""
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while time.monotonic() < deadline:
            if not service.running():
                raise StackError(f"{service.name} exited during start-up; see {service.log}")
            try:
                async with session.get(f"http://127.0.0.1:{service.port}{path}") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise StackError(f"{service.name} not ready within {READY_TIMEOUT:.0f} s; see {service.log}")


async def _listening(service: Service) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not service.running():
            raise StackError(f"{service.name} exited during start-up; see {service.log}")
        client = aioredis.Redis(port=service.port, socket_timeout=1)
        try:
            await client.ping()
            return
        except (RedisConnectionError, BusyLoadingError, OSError):
            await asyncio.sleep(0.05)
        finally:
            await client.aclose()
    raise StackError(f"{service.name} did not answer within {READY_TIMEOUT:.0f} s")

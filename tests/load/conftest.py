"""Load-test fixtures: Redis, the auth service and one chat instance as real processes.

Real processes, not in-process apps, so that the chat instance's memory (its RSS) is its own
and the auth service's access log counts exactly the introspection calls that reached it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import CHAT_CLIENT, auth_environ
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE = 30.0
STOP_DEADLINE = 20.0
# Descriptors the test process needs: one per client socket plus headroom; the services
# inherit the limit, and the chat instance needs one per accepted socket.
WANTED_FDS = 8192
# Variables of the developer's shell that must not leak into the services under test.
FOREIGN_PREFIXES = ("AUTH_", "CHAT_")
FOREIGN_NAMES = ("REDIS_URL", "APP_ENV", "LOG_LEVEL")


def raise_fd_limit(wanted: int = WANTED_FDS) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


@dataclass
class ServiceProcess:
    """One service started with `python -m <module>`; its stderr (JSON lines) goes to a file."""

    name: str
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        """Resident set size (VmRSS) from /proc, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"{self.name}: no VmRSS in /proc/{self.pid}/status")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = {"level": "raw", "msg": line}
            if isinstance(record, dict):
                records.append(record)
        return records

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, path: str, deadline: float = START_DEADLINE) -> None:
        """Polls `path` until it answers 200: waiting for a process we just spawned."""
        give_up = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}{path}", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > give_up:
                raise RuntimeError(f"{self.name} not ready after {deadline}s:\n{self.log_tail()}")
            time.sleep(0.05)  # polling a starting process; there is no event to wait on

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_DEADLINE)
        self._log.close()


def start_service(
    name: str, module: str, port: int, env: dict[str, str], logs: Path
) -> ServiceProcess:
    log_path = logs / f"{name}.log"
    log = log_path.open("wb")
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(FOREIGN_PREFIXES) and k not in FOREIGN_NAMES
    }
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return ServiceProcess(name, f"http://127.0.0.1:{port}", log_path, process, log)


@dataclass
class LoadStack:
    """A private Redis, the auth service and one chat instance, each its own process."""

    redis: RedisServer
    auth: ServiceProcess
    chat: ServiceProcess

    @property
    def ws_url(self) -> str:
        return self.chat.url.replace("http://", "ws://") + "/ws"


@pytest.fixture
def load_stack(tmp_path: Path) -> Iterator[LoadStack]:
    raise_fd_limit()
    with ExitStack() as stack:
        redis = RedisServer()
        stack.callback(redis.close)
        redis.start()

        auth_port, chat_port = free_port(), free_port()
        auth_env = auth_environ(
            redis.url,
            AUTH_HOST="127.0.0.1",
            AUTH_PORT=str(auth_port),
            AUTH_REGISTER_MAX_PER_ADDRESS="100000",
            AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS="100000",
            AUTH_HASH_WORKERS="2",
        )
        auth = start_service("auth", "auth_service", auth_port, auth_env, tmp_path)
        stack.callback(auth.stop)
        auth.wait_ready("/healthz")

        chat_env = {
            "REDIS_URL": redis.url,
            "CHAT_HOST": "127.0.0.1",
            "CHAT_PORT": str(chat_port),
            "AUTH_URL": auth.url,
            "CHAT_CLIENT_ID": CHAT_CLIENT[0],
            "CHAT_CLIENT_SECRET": CHAT_CLIENT[1],
        }
        chat = start_service("chat", "service", chat_port, chat_env, tmp_path)
        stack.callback(chat.stop)
        # /readyz, not /healthz: joins need the Redis subscriber to be connected.
        chat.wait_ready("/readyz")

        yield LoadStack(redis=redis, auth=auth, chat=chat)

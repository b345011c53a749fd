"""The private stack `make attack` attacks: redis-server, the auth service, chat instances.

Every scenario starts its own (`start_stack`) from the tree under test (`--source`), run with
this interpreter and with `cwd` and `PYTHONPATH` set to that tree, so one venv measures old
and new code alike. Only what is needed to run is configured (ports, Redis, the chat client's
secret, cheap Argon2 so that registering the test users is quick, `LOG_LEVEL=INFO` for the
auth service's access log); every limit keeps its default, since the default is what is
measured. Also here: readiness, the test users and their tokens.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.systems import free_port, pinned, stop_processes

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID, CLIENT_SECRET = "chat", "attack-bench-chat-secret-2f7c9a41"
PASSWORD = "correct horse battery staple"
ORIGIN = "http://127.0.0.1"
READY_TIMEOUT = 30.0
# Variables of the services that the caller's environment must not slip in: the run measures
# the defaults, whatever the shell that started it exports.
FOREIGN_PREFIXES = ("AUTH_", "CHAT_", "REDIS_", "APP_ENV", "LOG_LEVEL", "PYTHONPATH")


class StackError(RuntimeError):
    """A process of the stack did not start, or did not become ready in time."""


class Processes:
    """Every child process this run started: whatever ends the run stops them, by pid."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []
        # Servers on core 0; redis-server, the probes and this process on core 1 (as
        # `make bench` does), when the machine has both: the attacker's own CPU use then
        # does not slow the services it measures. None: not pinned.
        self.server_core: str | None = None
        self.load_core: str | None = None

    def pin(self) -> bool:
        if not {0, 1} <= os.sched_getaffinity(0) or shutil.which("taskset") is None:
            return False
        self.server_core, self.load_core = "0", "1"
        os.sched_setaffinity(0, {1})
        return True

    def spawn(
        self,
        argv: list[str],
        core: str | None,
        log: Path,
        *,
        preexec_fn: Callable[[], None] | None = None,
        **options: Any,
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as handle:
            # A session of its own: Ctrl-C reaches this process only, which then stops the
            # children in order instead of all of them dying at once mid-measurement.
            process = subprocess.Popen(
                pinned(argv, core),
                stdout=options.pop("stdout", handle),
                stderr=handle,
                preexec_fn=preexec_fn,
                start_new_session=True,
                **options,
            )
        self._started.append(process)
        return process

    def stop(self, processes: list[subprocess.Popen[bytes]]) -> None:
        stop_processes(processes)
        self._started = [p for p in self._started if p not in processes]

    def stop_all(self) -> None:
        self.stop(list(reversed(self._started)))


PROCESSES = Processes()


def describe(process: subprocess.Popen[bytes]) -> str:
    code = process.poll()
    return "running" if code is None else f"exited with status {code}"


def service_env(source: Path, redis_url: str, auth_port: int) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    return {
        **base,
        "PYTHONPATH": str(source),
        "PYTHONDONTWRITEBYTECODE": "1",  # leave the tree under test exactly as it is
        "REDIS_URL": redis_url,
        "AUTH_HOST": "127.0.0.1",
        "AUTH_PORT": str(auth_port),
        "AUTH_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET}",
        "AUTH_ARGON2_TIME_COST": "1",
        "AUTH_ARGON2_MEMORY_KIB": "1024",
        "AUTH_ARGON2_PARALLELISM": "1",
        "LOG_LEVEL": "INFO",
        "AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "CHAT_CLIENT_ID": CLIENT_ID,
        "CHAT_CLIENT_SECRET": CLIENT_SECRET,
        "CHAT_ALLOWED_ORIGINS": ORIGIN,
    }


def _fd_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@dataclass
class Stack:
    """One scenario's processes; `name` prefixes their log files."""

    name: str
    logs: Path
    redis: subprocess.Popen[bytes]
    redis_url: str
    auth: subprocess.Popen[bytes]
    auth_port: int
    chats: list[subprocess.Popen[bytes]]
    chat_ports: list[int]

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.auth_port}"

    @property
    def auth_log(self) -> Path:
        return self.logs / f"{self.name}.auth.log"

    def chat_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.chat_ports[index]}"

    def ws_url(self, index: int = 0) -> str:
        return f"ws://127.0.0.1:{self.chat_ports[index]}/ws"

    def status(self) -> dict[str, str]:
        named = {"redis": self.redis, "auth": self.auth}
        named.update({f"chat{i + 1}": chat for i, chat in enumerate(self.chats)})
        return {name: describe(process) for name, process in named.items()}

    def stop(self) -> None:
        PROCESSES.stop([*self.chats, self.auth, self.redis])


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Polls `url` until it answers 200: a process start has no event to wait on."""
    deadline = time.monotonic() + READY_TIMEOUT
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"{describe(process)} during start-up; see {log}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise StackError(f"{url} did not answer 200 within {READY_TIMEOUT:.0f} s; see {log}")


async def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"redis-server {describe(process)}; see {log}")
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise StackError(f"redis-server did not listen on {port}; see {log}")


async def start_stack(
    source: Path, logs: Path, name: str, *, chats: int = 1, auth_fd_limit: int | None = None
) -> Stack:
    """redis-server, the auth service (with `auth_fd_limit` descriptors if given) and `chats`
    chat instances, each ready; on any failure, whatever was started is stopped."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        redis_port = free_port()
        redis_log = logs / f"{name}.redis.log"
        redis = PROCESSES.spawn(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(logs)],
            PROCESSES.load_core, redis_log,
        )  # fmt: skip
        started.append(redis)
        await _wait_listening(redis_port, redis, redis_log)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        auth_port = free_port()
        env = service_env(source, redis_url, auth_port)
        auth_log = logs / f"{name}.auth.log"
        auth = PROCESSES.spawn(
            [sys.executable, "-m", "auth_service"],
            PROCESSES.server_core,
            auth_log,
            preexec_fn=None if auth_fd_limit is None else _fd_limit(auth_fd_limit),
            env=env,
            cwd=source,
        )
        started.append(auth)
        await _wait_ready(f"http://127.0.0.1:{auth_port}/healthz", auth, auth_log)
        ports = [free_port() for _ in range(chats)]
        processes = []
        for index, port in enumerate(ports):
            log = logs / f"{name}.chat{index + 1}.log"
            chat = PROCESSES.spawn(
                [sys.executable, "-m", "service"],
                PROCESSES.server_core,
                log,
                env={**env, "CHAT_PORT": str(port)},
                cwd=source,
            )
            started.append(chat)
            processes.append(chat)
            await _wait_ready(f"http://127.0.0.1:{port}/healthz", chat, log)
            await _wait_ready(f"http://127.0.0.1:{port}/readyz", chat, log)
    except BaseException:
        PROCESSES.stop(list(reversed(started)))
        raise
    return Stack(name, logs, redis, redis_url, auth, auth_port, processes, ports)


async def login(auth_url: str, username: str) -> str:
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(f"{auth_url}/token", data=form) as response,
    ):
        body = await response.json(content_type=None)
        if response.status != 200 or "access_token" not in body:
            raise StackError(f"login of {username} answered {response.status}: {body}")
        return str(body["access_token"])


async def users_with_tokens(auth_url: str, names: list[str]) -> dict[str, str]:
    """Registers each name (201) and logs it in: name -> access token."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for name in names:
            body = {"username": name, "password": PASSWORD}
            async with session.post(f"{auth_url}/users", json=body) as response:
                if response.status != 201:
                    raise StackError(f"registering {name} answered {response.status}")
    return {name: await login(auth_url, name) for name in names}

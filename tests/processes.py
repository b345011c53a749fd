"""Services as real processes for tests that need a process of their own: its own memory,
descriptor limit, log file and signals."""

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
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
    name: str,
    module: str,
    port: int,
    env: dict[str, str],
    logs: Path,
    *,
    preexec_fn: Callable[[], None] | None = None,
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
        preexec_fn=preexec_fn,
    )
    return ServiceProcess(name, f"http://127.0.0.1:{port}", log_path, process, log)

"""A private redis-server for the test suite, which fault tests may stop and restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on a fixed port; `stop()` and `start()` keep the port."""

    def __init__(self, password: str | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
        self._executable = executable
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="test-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self.password = password  # `requirepass`, kept in a file out of `ps`

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        config = Path(self._dir) / "auth.conf"
        config.write_text(f"requirepass {self.password}\n" if self.password else "")
        self._process = subprocess.Popen(
            [
                self._executable,
                str(config),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",  # durable like production, so a fault test's stop/start keeps data
                "--appendfsync",
                "everysec",
                "--dir",
                self._dir,
                "--logfile",
                str(Path(self._dir) / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        raise RuntimeError(f"redis-server did not start on {self.port}") from None
                    time.sleep(0.02)  # polling a process we just spawned; no event to wait on
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

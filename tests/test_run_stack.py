"""`make run`'s supervisor: a chat instance that exits is reported and the rest go on; the
run ends when Redis or the auth service exits, or no chat instance is left."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chaos.local_cluster import bindable

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run_stack.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_stack", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _idle() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


@pytest.fixture
def stack() -> Iterator[Any]:
    run_stack = _load()
    stack = run_stack.Stack()
    for name in ("redis", "auth", "chat1", "chat2"):
        stack.processes.append((name, _idle()))
    yield stack
    for _name, process in stack.processes:
        process.kill()
        process.wait()


def _kill(stack: Any, name: str) -> None:
    process = dict(stack.processes)[name]
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_chat_instance_exiting_is_reported_and_the_rest_go_on(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ended = pool.submit(stack.supervise)
        _kill(stack, "chat1")
        said = ""
        deadline = time.monotonic() + 10
        while "chat1 exited" not in said and time.monotonic() < deadline:
            said += capsys.readouterr().out
            time.sleep(0.05)  # the supervisor polls its children; so does this test
        assert "chat1 exited (killed by signal 9" in said
        assert "chat2 go on" in said
        assert not ended.done()  # reported after the exit, and still supervising
        _kill(stack, "chat2")
        reason = ended.result(timeout=10)
        assert reason == "chat2 exited (killed by signal 9) and no chat instance is left"


def test_the_auth_service_exiting_ends_the_run(stack: Any) -> None:
    _kill(stack, "auth")
    assert stack.supervise().startswith("auth exited (killed by signal 9)")


def test_a_busy_port_is_named_and_nothing_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_stack = _load()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(run_stack, "AUTH_PORT", port)
        assert run_stack.main() == 1
    out = capsys.readouterr().out
    assert f"port {port} is already in use" in out
    assert "starting the stack" not in out


def test_the_banner_prints_each_instances_web_client(capsys: pytest.CaptureFixture[str]) -> None:
    run_stack = _load()
    chat = [f"ws://127.0.0.1:{port}/ws" for port in run_stack.CHAT_PORTS]
    run_stack.print_banner(["redis://127.0.0.1:6390/0"], chat, run_stack.web_urls(chat))
    out = capsys.readouterr().out
    for port in run_stack.CHAT_PORTS:
        assert f"  web    http://127.0.0.1:{port}/  (the web client" in out


def test_make_run_lets_each_instances_page_call_the_auth_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both instances' origins, on both names of this machine, in AUTH_ALLOWED_ORIGINS (and in
    CHAT_ALLOWED_ORIGINS): read from the environment `main` gives the auth service."""
    run_stack = _load()
    seen: dict[str, dict[str, str]] = {}

    def record(self: Any, name: str, argv: list[str], env: dict[str, str]) -> None:
        seen[name] = env
        raise KeyboardInterrupt  # nothing is started: the environment is what is looked at

    monkeypatch.setattr(run_stack.Stack, "start", record)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # no redis-server is started
    monkeypatch.delenv("AUTH_ALLOWED_ORIGINS", raising=False)
    monkeypatch.delenv("CHAT_ALLOWED_ORIGINS", raising=False)
    monkeypatch.setattr(run_stack, "bindable", lambda port: True)
    monkeypatch.setattr(run_stack.signal, "signal", lambda *args: None)  # this process's own
    assert run_stack.main() == 0
    origins = set(seen["auth"]["AUTH_ALLOWED_ORIGINS"].split(","))
    assert origins == {
        f"http://{host}:{port}"
        for port in run_stack.CHAT_PORTS
        for host in ("127.0.0.1", "localhost")
    }
    assert set(seen["auth"]["CHAT_ALLOWED_ORIGINS"].split(",")) == origins
    # A page whose instance goes away may move its socket to the other.
    assert seen["auth"]["CHAT_WEB_SOCKET_URLS"].split(",") == [
        f"ws://127.0.0.1:{port}/ws" for port in run_stack.CHAT_PORTS
    ]


def test_a_port_a_stopped_run_left_in_time_wait_is_free_and_a_listener_is_not() -> None:
    """A second `make run` right after the first stopped: the connections the first one closed
    linger in TIME_WAIT, which do not stop a server from binding (SO_REUSEADDR), so they must
    not make the port look busy."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp listens
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not bindable(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: it is the side left in TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    assert bindable(port)

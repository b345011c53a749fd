"""The admin commands (`auth-service users …`, `keys …`) pointed at a Redis that is not there:
one line naming where they looked (password hidden) and how to fix it, exit status 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.redis_server import free_port


@pytest.mark.parametrize("command", [["users", "disable", "alice"], ["keys", "list"]])
def test_an_unreachable_redis_is_one_line_not_a_traceback(command: list[str]) -> None:
    url = f"redis://admin:hunter2-secret@127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [sys.executable, "-m", "auth_service", *command],
        env={"REDIS_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("auth-service:")]
    assert "cannot reach Redis at redis://admin:***@127.0.0.1:" in line
    assert "REDIS_URL" in line
    assert "hunter2-secret" not in done.stderr + done.stdout

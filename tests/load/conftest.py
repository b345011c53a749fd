"""Load-test fixtures: Redis, the auth service and one chat instance as real processes.

Real processes, not in-process apps, so that the chat instance's memory (its RSS) is its own
and the auth service's access log counts exactly the introspection calls that reached it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CHAT_CLIENT, auth_environ
from tests.processes import ServiceProcess, raise_fd_limit, start_service
from tests.redis_server import RedisServer, free_port


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
            AUTH_MAX_PENDING_HASHES="1000",  # logins from one address, many at once
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
            # Every client of the load tests comes from 127.0.0.1.
            "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "100000",
        }
        chat = start_service("chat", "service", chat_port, chat_env, tmp_path)
        stack.callback(chat.stop)
        # /readyz, not /healthz: joins need the Redis subscriber to be connected.
        chat.wait_ready("/readyz")

        yield LoadStack(redis=redis, auth=auth, chat=chat)

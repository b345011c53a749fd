"""`chat-client` resumes with `since` when its chat instance, a real process, is killed: what
another user sent meanwhile is printed once and in order, after a plain line for whatever
history no longer holds (a range, or a reset)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from chat_client.main import MAX_DELAY
from service.rooms.history import history_key, meta_key
from tests.chat.clis import CLOCK, DEADLINE, Cli, CliFactory, chat_client, proxies, proxy_to
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import ChatUser, Stack, api
from tests.conftest import CHAT_CLIENT, Store
from tests.faults import LinkProxy
from tests.redis_server import free_port

__all__ = ["chat_client", "proxies"]  # fixtures, imported for the tests here

STARTUP = 20.0  # seconds for a fresh interpreter to import the service and listen


@pytest.fixture
def store(redis_url: str) -> Store:
    """The instances here are processes on one Redis (killing a cluster's primary is
    test_cluster_faults')."""
    return Store(redis_url)


class ChatProcess:
    """`python -m service` on a fixed port, to be killed and started again there."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self._env = {**env, "CHAT_PORT": str(self.port)}
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", env=self._env, stderr=asyncio.subprocess.PIPE
        )
        stderr = self.process.stderr
        assert stderr is not None
        async with asyncio.timeout(STARTUP):  # it logs "serving" once it listens
            while b'"msg": "serving"' not in await stderr.readline():
                pass
        self._drain = asyncio.create_task(self._read_to_end(stderr))  # a full pipe blocks it

    @staticmethod
    async def _read_to_end(stderr: asyncio.StreamReader) -> None:
        while await stderr.read(65536):
            pass

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        if self._drain is not None:
            await self._drain


ProcessFactory = Callable[..., Awaitable[ChatProcess]]


@pytest.fixture
async def chat_process(redis_url: str, auth_server: TestServer) -> AsyncIterator[ProcessFactory]:
    started: list[ChatProcess] = []

    async def start(**overrides: str) -> ChatProcess:
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "AUTH_URL": str(auth_server.make_url("")).rstrip("/"),
            "CHAT_CLIENT_ID": CHAT_CLIENT[0],
            "CHAT_CLIENT_SECRET": CHAT_CLIENT[1],
            "CHAT_CLOSE_TIMEOUT": "1",
            **overrides,
        }
        chat = ChatProcess(env)
        started.append(chat)
        await chat.start()
        return chat

    yield start
    for chat in started:
        await chat.kill()


async def post(stack: Stack, user: ChatUser, room: str, text: str) -> None:
    status, body = await api(stack.b, "POST", f"/api/rooms/{room}/messages", user.access_token,
                             {"text": text})  # fmt: skip
    assert status == 201, body


def printed_once(cli: Cli, out: str, *texts: str) -> None:
    printed = [*cli.seen, *out.splitlines()]
    for text in texts:
        assert sum(line.endswith(f": {text}") for line in printed) == 1, (text, printed)


async def test_a_killed_instance_restarted_resumes_every_missed_message_once(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory,
    chat_process: ProcessFactory,
) -> None:  # fmt: skip
    chat = await chat_process()
    cli = await chat_client("--url", chat.url, "--room", "lobby", "--token", alice.access_token)
    await cli.expect(r"\* joined #lobby")
    await post(stack, bob, "lobby", "before")
    await cli.expect(rf"{CLOCK} #lobby <bob>: before")

    await chat.kill()
    await cli.expect(r"\* connection lost \(1006\)")
    for n in range(1, 4):
        await post(stack, bob, "lobby", f"while away {n}")
    await cli.expect(r"\* cannot connect to .*: connection refused")  # still down
    await chat.start()  # the same port
    # While the instance started, the client's retries backed off: up to MAX_DELAY apart.
    await cli.expect(r"\* rejoined #lobby: 3 missed messages follow", DEADLINE + MAX_DELAY)
    for n in range(1, 4):
        await cli.expect(rf"{CLOCK} #lobby <bob>: while away {n}")
    await post(stack, bob, "lobby", "live again")
    await cli.expect(rf"{CLOCK} #lobby <bob>: live again")

    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    printed_once(cli, out, "before", "while away 1", "while away 2", "while away 3", "live again")


async def test_killed_beyond_history_the_client_moves_on_and_says_what_is_lost(
    make_chat: ChatFactory, stack: Stack, alice: ChatUser, bob: ChatUser,
    chat_client: CliFactory, chat_process: ProcessFactory, proxies: list[LinkProxy],
) -> None:  # fmt: skip
    short = '{"": {"history_size": 3}}'
    chat = await chat_process(CHAT_NAMESPACES=short)
    other = await make_chat(CHAT_NAMESPACES=short)
    way_in, other_url = await proxy_to(other, proxies)
    way_in.cut()  # out of reach until everything was sent
    cli = await chat_client(
        "--url", chat.url, "--url", other_url, "--room", "lobby", "--token", alice.access_token
    )
    await cli.expect(r"\* joined #lobby")
    await post(stack, bob, "lobby", "m1")
    await cli.expect(rf"{CLOCK} #lobby <bob>: m1")

    await chat.kill()
    await cli.expect(r"\* connection lost \(1006\)")
    for n in range(2, 8):  # history keeps m5 to m7
        await post(stack, bob, "lobby", f"m{n}")
    way_in.restore()
    await cli.expect(r"\* rejoined #lobby")
    await cli.expect(r"! #lobby: messages 2 to 4 are lost \(no longer in history\)")
    for n in range(5, 8):
        await cli.expect(rf"{CLOCK} #lobby <bob>: m{n}")

    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    printed_once(cli, out, "m1", "m5", "m6", "m7")
    assert not [line for line in [*cli.seen, *out.splitlines()] if line.endswith(": m3")]


async def test_a_reset_history_is_said_and_the_new_epoch_resumed_from(
    stack: Stack, alice: ChatUser, bob: ChatUser, chat_client: CliFactory,
    proxies: list[LinkProxy], store: Store,
) -> None:  # fmt: skip
    link, url = await proxy_to(stack.a, proxies)
    cli = await chat_client("--url", url, "--room", "lobby", "--token", alice.access_token)
    await cli.expect(r"\* joined #lobby")
    await post(stack, bob, "lobby", "old epoch")
    await cli.expect(rf"{CLOCK} #lobby <bob>: old epoch")

    link.cut()
    await cli.expect(r"\* connection lost \(1006\)")
    await cli.expect(r"\* cannot connect to .*")
    redis = store.client()
    await redis.delete(meta_key("lobby"), history_key("lobby"))  # the room's history is lost
    await redis.aclose()
    await post(stack, bob, "lobby", "new epoch")
    link.restore()
    await cli.expect(r"\* rejoined #lobby")
    await cli.expect(
        r"! #lobby: the room's history was reset; what was sent while you were away is lost"
    )
    await cli.expect(rf"{CLOCK} #lobby <bob>: new epoch")

    link.cut()  # away again: it resumes from the new epoch, losing nothing
    await cli.expect(r"\* connection lost \(1006\)")
    await post(stack, bob, "lobby", "after the reset")
    link.restore()
    await cli.expect(r"\* rejoined #lobby: 1 missed message follow")
    await cli.expect(rf"{CLOCK} #lobby <bob>: after the reset")

    cli.end_input()
    status, out, err = await cli.result()
    assert status == 0, (out, err)
    printed_once(cli, out, "old epoch", "new epoch", "after the reset")

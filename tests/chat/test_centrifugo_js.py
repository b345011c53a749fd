"""The `centrifuge` npm SDK under Node against /connection/websocket (tests/sdk/js/client.mjs),
with a centrifuge-python client on the other chat instance: connect, subscribe, a publication
each way across instances, history, presence, and recovery after a dropped connection."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from centrifuge import Client

from tests.chat.centrifugo_sdk import address, connected, next_of, subscribed
from tests.chat.helpers import DEADLINE, ChatUser, Stack
from tests.conftest import Store
from tests.faults import LinkProxy

SCRIPT_DIR = Path(__file__).resolve().parent.parent / "sdk" / "js"


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis_url)


class NodeClient:
    """tests/sdk/js/client.mjs as a child process: commands in, JSON events out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict[str, Any]] = []

    async def expect(self, event: str, deadline: float = DEADLINE) -> dict[str, Any]:
        """The next line of kind `event` (lines of other kinds are kept in `seen`)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(deadline):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    stderr = await self.process.stderr.read() if self.process.stderr else b""
                    raise AssertionError(f"node exited: {stderr.decode()[-2000:]}")
                parsed: dict[str, Any] = json.loads(line)
                self.seen.append(parsed)
                if parsed["event"] == event:
                    return parsed

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()


@pytest.fixture
async def node_client() -> AsyncIterator[Any]:
    started: list[NodeClient] = []

    async def start(url: str, room: str, token: str) -> NodeClient:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node (Node.js 20+) is not on PATH: it runs the centrifuge npm SDK test")
        if not (SCRIPT_DIR / "node_modules" / "centrifuge").is_dir():
            pytest.fail(f"the npm SDK is not installed: run `make test` (npm ci in {SCRIPT_DIR})")
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT_DIR / "client.mjs"),
            url,
            room,
            cwd=SCRIPT_DIR,
            env={**os.environ, "CENTRIFUGE_TOKEN": token},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        client = NodeClient(process)
        started.append(client)
        return client

    yield start
    for client in started:
        if client.process.returncode is None:
            client.process.kill()
        await client.process.wait()


async def test_the_npm_sdk_talks_to_a_python_sdk_across_instances(
    stack: Stack, alice: ChatUser, bob: ChatUser, node_client: Any
) -> None:
    node = await node_client(address(stack.a), "lobby", alice.access_token)
    hello = await node.expect("connected")
    assert hello["data"] == {"user": {"id": alice.id, "username": "alice"}}
    subscribed_ctx = await node.expect("subscribed")
    assert subscribed_ctx["recoverable"]
    assert subscribed_ctx["positioned"]

    python: Client
    python, _ = await connected(address(stack.b), bob.access_token)
    try:
        sub, events = await subscribed(python, "lobby")
        assert (await node.expect("join"))["info"]["user"] == bob.id

        await sub.publish({"text": "from python on B"})
        publication = await node.expect("publication")
        assert publication["data"]["text"] == "from python on B"
        assert publication["data"]["from"] == {"id": bob.id, "username": "bob"}
        assert publication["offset"] == 1
        assert publication["info"]["user"] == bob.id

        assert (await next_of(events.publications)).pub.data["text"] == "from python on B"
        await node.command("publish from node on A")
        await node.expect("published")
        received = await next_of(events.publications)
        assert received.pub.data["text"] == "from node on A"
        assert received.pub.info.user == alice.id

        await node.command("history")
        history = await node.expect("history")
        assert history["texts"] == ["from python on B", "from node on A"]
        assert history["offset"] == 2

        await node.command("presence")
        presence = await node.expect("presence")
        assert presence["users"] == sorted([alice.id, bob.id])
        assert presence["stats"] == {"numClients": 2, "numUsers": 2}
    finally:
        await python.disconnect()
    await node.command("exit")
    assert await asyncio.wait_for(node.process.wait(), DEADLINE) == 0
    assert not [e for e in node.seen if e["event"] in ("error", "subscription_error", "failed")]


async def test_the_npm_sdk_recovers_what_it_missed_while_dropped(
    stack: Stack, alice: ChatUser, bob: ChatUser, node_client: Any
) -> None:
    way_in = LinkProxy(stack.a.server.port)
    await way_in.start()
    url = f"ws://127.0.0.1:{way_in.port}/connection/websocket"
    node = await node_client(url, "lobby", alice.access_token)
    await node.expect("subscribed")
    python, _ = await connected(address(stack.b), bob.access_token)
    try:
        sub, _ = await subscribed(python, "lobby")
        await sub.publish({"text": "before"})
        assert (await node.expect("publication"))["offset"] == 1

        way_in.cut()
        await node.expect("subscribing")
        for text in ("missed 1", "missed 2"):
            await sub.publish({"text": text})
        way_in.restore()

        again = await node.expect("subscribed", deadline=10)
        assert again["wasRecovering"]
        assert again["recovered"]
        recovered = [await node.expect("publication") for _ in range(2)]
        assert [p["data"]["text"] for p in recovered] == ["missed 1", "missed 2"]
        assert [p["offset"] for p in recovered] == [2, 3]
    finally:
        await python.disconnect()
        await way_in.close()

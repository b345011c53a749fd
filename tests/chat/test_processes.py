"""Chat instances as real processes: one killed with SIGKILL, one stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.chat.helpers import ChatUser, Stack, receive, receive_type
from tests.conftest import CHAT_CLIENT
from tests.redis_server import free_port

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
SHUTDOWN_BOUND = 10.0  # seconds a SIGTERM'd instance may take to close its sockets and exit


@dataclass
class ChatProcess:
    process: asyncio.subprocess.Process
    url: str


ChatProcessFactory = Callable[..., Awaitable[ChatProcess]]


@pytest.fixture
async def chat_process(
    redis_url: str, auth_server: TestServer
) -> AsyncIterator[ChatProcessFactory]:
    started: list[ChatProcess] = []

    async def start(**overrides: str) -> ChatProcess:
        port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "AUTH_URL": str(auth_server.make_url("")).rstrip("/"),
            "CHAT_PORT": str(port),
            "CHAT_CLIENT_ID": CHAT_CLIENT[0],
            "CHAT_CLIENT_SECRET": CHAT_CLIENT[1],
            "CHAT_CLOSE_TIMEOUT": "1",
            **overrides,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", env=env, stderr=asyncio.subprocess.PIPE
        )
        chat = ChatProcess(process, f"http://127.0.0.1:{port}")
        started.append(chat)
        assert process.stderr is not None
        async with asyncio.timeout(20):  # the service logs "serving" once it listens
            while b'"msg": "serving"' not in await process.stderr.readline():
                pass
        return chat

    yield start
    for chat in started:
        if chat.process.returncode is None:
            chat.process.kill()
            await chat.process.wait()


async def open_socket(
    session: aiohttp.ClientSession, chat: ChatProcess, user: ChatUser, room: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(
        f"{chat.url}/ws", headers={"Authorization": f"Bearer {user.access_token}"}
    )
    assert (await receive(ws))["type"] == "hello"
    await ws.send_json({"op": "join", "room": room})
    await receive_type(ws, "joined")
    return ws


async def receive_type_within(
    ws: aiohttp.ClientWebSocketResponse, kind: str, deadline: float
) -> dict[str, Any]:
    async with asyncio.timeout(deadline):
        while (frame := await receive(ws, deadline))["type"] != kind:
            pass
    return dict(frame)


async def _past_frames(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The next message that is not a text frame (presence frames may come first)."""
    while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
        pass
    return message


async def test_sigkill_of_one_instance_goes_unnoticed_by_the_others_clients(
    chat_process: ChatProcessFactory, stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    doomed, survivor = await chat_process(), await chat_process()
    carol = await stack.user("carol", "carol password")
    async with aiohttp.ClientSession() as session:
        on_doomed = await open_socket(session, doomed, alice, "lobby")
        sender = await open_socket(session, survivor, bob, "lobby")
        listener = await open_socket(session, survivor, carol, "lobby")

        doomed.process.send_signal(signal.SIGKILL)
        await doomed.process.wait()
        closed = await asyncio.wait_for(_past_frames(on_doomed), 5)
        assert closed.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)

        for n in range(5):
            await sender.send_json({"op": "send", "room": "lobby", "text": f"m{n}"})
        texts = [(await receive_type(listener, "message"))["text"] for _ in range(5)]
        assert texts == [f"m{n}" for n in range(5)]
        async with session.get(f"{survivor.url}/readyz") as response:
            assert response.status == 200
        await sender.close()
        await listener.close()


async def test_sigterm_closes_sockets_with_1001_and_exits_cleanly(
    chat_process: ChatProcessFactory, alice: ChatUser, bob: ChatUser
) -> None:
    chat = await chat_process()
    async with aiohttp.ClientSession() as session:
        sockets = [await open_socket(session, chat, user, "lobby") for user in (alice, bob)]
        started = time.monotonic()
        chat.process.send_signal(signal.SIGTERM)
        for ws in sockets:
            message = await asyncio.wait_for(_past_frames(ws), SHUTDOWN_BOUND)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == 1001
        code = await asyncio.wait_for(chat.process.wait(), SHUTDOWN_BOUND)
        assert code == 0
        assert time.monotonic() - started < SHUTDOWN_BOUND
        assert chat.process.stderr is not None
        rest = await chat.process.stderr.read()
        assert b"Traceback" not in rest


async def test_the_clients_of_a_killed_instance_resume_on_another_losing_nothing(
    chat_process: ChatProcessFactory, alice: ChatUser, bob: ChatUser
) -> None:
    doomed, survivor = await chat_process(), await chat_process()
    async with aiohttp.ClientSession() as session:
        reader = await session.ws_connect(
            f"{doomed.url}/ws", headers={"Authorization": f"Bearer {alice.access_token}"}
        )
        assert (await receive(reader))["type"] == "hello"
        await reader.send_json({"op": "join", "room": "lobby"})
        epoch = (await receive_type(reader, "joined"))["epoch"]
        sender = await open_socket(session, survivor, bob, "lobby")
        for n in range(5):
            await sender.send_json({"op": "send", "room": "lobby", "text": f"m{n}"})
        last = 0
        for _ in range(5):
            last = (await receive_type(reader, "message"))["offset"]

        doomed.process.send_signal(signal.SIGKILL)
        await doomed.process.wait()
        for n in range(5, 12):  # sent while the reader has no instance
            await sender.send_json({"op": "send", "room": "lobby", "text": f"m{n}"})
            await receive_type(sender, "ack")

        resumed = await session.ws_connect(
            f"{survivor.url}/ws", headers={"Authorization": f"Bearer {alice.access_token}"}
        )
        assert (await receive(resumed))["type"] == "hello"
        await resumed.send_json(
            {"op": "join", "room": "lobby", "since": {"offset": last, "epoch": epoch}}
        )
        assert (await receive_type(resumed, "joined"))["recovered"] is True
        texts = [(await receive_type(resumed, "message"))["text"] for _ in range(7)]
        assert texts == [f"m{n}" for n in range(5, 12)]
        for ws in (reader, sender, resumed):
            await ws.close()


async def test_a_killed_instances_users_leave_presence_within_10_s(
    chat_process: ChatProcessFactory, stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    doomed, survivor = await chat_process(), await chat_process()
    await chat_process()  # a third instance, racing the survivor for the clean-up
    async with aiohttp.ClientSession() as session:
        on_doomed = await open_socket(session, doomed, alice, "lobby")  # held: dropped, it closes
        watcher = await open_socket(session, survivor, bob, "lobby")
        doomed.process.send_signal(signal.SIGKILL)
        await doomed.process.wait()
        started = time.monotonic()
        dropped = await asyncio.wait_for(_past_frames(on_doomed), 5)  # open until the kill
        assert dropped.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        left = await asyncio.wait_for(receive_type_within(watcher, "member_left", 10.0), 10.0)
        assert left["user"]["id"] == alice.id
        assert time.monotonic() - started < 10.0  # SPEC: within 10 s of the kill
        await watcher.send_json({"op": "presence", "room": "lobby"})
        answer = await receive_type(watcher, "presence")
        assert [m["id"] for m in answer["members"]] == [bob.id]  # no ghost
        # exactly once: the two survivors raced to clean up, one did
        await watcher.send_json({"op": "send", "room": "lobby", "text": "marker"})
        while (frame := await receive(watcher))["type"] != "message":
            assert frame["type"] != "member_left", frame


async def test_a_killed_instances_sockets_stop_counting_against_the_user_within_10_s(
    chat_process: ChatProcessFactory, alice: ChatUser
) -> None:
    doomed = await chat_process(CHAT_MAX_CONNECTIONS_PER_USER="1")
    survivor = await chat_process(CHAT_MAX_CONNECTIONS_PER_USER="1")
    bearer = {"Authorization": f"Bearer {alice.access_token}"}
    async with aiohttp.ClientSession() as session:
        on_doomed = await open_socket(session, doomed, alice, "lobby")  # held: dropped, it closes
        async with session.get(f"{survivor.url}/ws", headers={**UPGRADE, **bearer}) as response:
            assert response.status == 429  # her one socket is on the doomed instance
        doomed.process.send_signal(signal.SIGKILL)
        await doomed.process.wait()
        started = time.monotonic()
        dropped = await asyncio.wait_for(_past_frames(on_doomed), 5)  # open until the kill
        assert dropped.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        while True:  # each attempt is a real handshake; the answer changes once reaped
            async with session.get(f"{survivor.url}/ws", headers={**UPGRADE, **bearer}) as r:
                if r.status == 101:
                    break
                assert r.status == 429
            assert time.monotonic() - started < 10.0  # SPEC: within 10 s
            await asyncio.sleep(0.25)

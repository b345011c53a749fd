"""Requests aiohttp cannot parse (finding 7 of the attack on 326b726): both services answer
400 without echoing the request and log no credential, however the request is malformed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from common.logging import JsonFormatter
from tests.chat.conftest import ChatFactory

Client = TestClient[Any, Any]
SESSION_ID = "S3ss10n1dS3ss10n1dS3ss10n1dS3ss10n1dS3ss10n"  # 43 characters, like a real one
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"


@pytest.fixture
async def server(make_either: ChatFactory) -> Client:
    return await make_either()


async def exchange(client: Client, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


MALFORMED = {
    "cookie line too long": (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nCookie: chat_session="
        + SESSION_ID.encode()
        + b"; pad="
        + b"x" * 9000
        + b"\r\n\r\n"
    ),
    "NUL after a bearer subprotocol": (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Protocol: chat.v1, bearer." + TOKEN.encode() + b"\x00\r\n\r\n"
    ),
    "credential in the request line": b"GET /ws?token=" + TOKEN.encode() + b" HTTP/1.1 x\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_request_echoes_and_logs_no_credential(
    server: Client, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await exchange(server, request_bytes)
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    for secret in (SESSION_ID, TOKEN):
        assert secret.encode() not in answer
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    for secret in (SESSION_ID, TOKEN):
        assert secret not in logged
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

"""No credential ever reaches a log line."""

import json
import logging
import sys

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from common.logging import AccessLogger, JsonFormatter
from tests.auth.helpers import CHAT_AUTH, Client, introspect, refresh_grant, register
from tests.conftest import CHAT_CLIENT, PASSWORD


async def test_a_full_flow_logs_no_secret(auth: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await register(auth)
    tokens = await (
        await auth.post(
            "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
        )
    ).json()
    await introspect(auth, tokens["access_token"])
    await refresh_grant(auth, tokens["refresh_token"])
    await refresh_grant(auth, tokens["refresh_token"])  # a reuse, which is logged as revocation
    login = await auth.post("/login", json={"username": "alice", "password": PASSWORD})
    cookie = login.cookies["chat_session"].value
    await auth.post("/logout", json={})
    await auth.post("/revoke", data={"token": tokens["access_token"]}, headers=CHAT_AUTH)

    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    assert "revoked" in text  # the flow did log; the assertions below are not vacuous
    for secret in (
        PASSWORD,
        tokens["access_token"],
        tokens["refresh_token"],
        cookie,
        CHAT_CLIENT[1],
    ):
        assert secret not in text


def test_sensitive_extras_are_redacted() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
    record.token = "secret-token-value"
    record.user = "alice"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["token"] == "[redacted]"
    assert entry["user"] == "alice"


def test_access_log_leaves_out_the_query_string(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("test.access")
    request = make_mocked_request("GET", "/ws?access_token=SECRET-IN-URL")
    AccessLogger(logger, "").log(request, web.Response(status=200), 0.01)
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert '"path": "/ws"' in text
    assert "SECRET-IN-URL" not in text


def test_access_log_is_skipped_below_info() -> None:
    # aiohttp asks `enabled` once per connection and skips timing and logging when false.
    logger = logging.getLogger("test.access.level")
    logger.setLevel(logging.WARNING)
    assert AccessLogger(logger, "").enabled is False
    logger.setLevel(logging.INFO)
    assert AccessLogger(logger, "").enabled is True


def test_credential_shapes_are_redacted_wherever_they_appear() -> None:
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    refresh = "rt_" + "A" * 43
    session = "B" * 43
    try:
        raise ValueError(f"line {jwt!r} and Cookie: chat_session={session}")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "quoted %s", (refresh,), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    for secret in (jwt, refresh, session):
        assert secret not in line
    assert line.count("[redacted]") == 3  # the message, and twice in the exception line
    assert json.loads(line)["level"] == "error"

"""The introspection client's cache against revocation events arriving mid-look-up."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from service.auth.chain import CredentialChecker
from service.auth.introspection import IntrospectionClient, IntrospectionUnavailable
from service.errors import Refusal, Refused
from service.metrics import ChatMetrics


class HeldAnswers:
    """Stands in for `/introspect`: each call waits for `release`, then answers `active`."""

    def __init__(self) -> None:
        self.calls = 0
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def fetch(self, token: str, hint: str) -> dict[str, Any]:
        self.calls += 1
        self.asked.set()
        await self.release.wait()
        return {"active": True, "token_type": hint, "username": "alice", "sub": "u1",
                "jti": "j1", "sid": "s1", "exp": time.time() + 300, "scope": "chat"}  # fmt: skip


@pytest.fixture
async def client() -> AsyncIterator[IntrospectionClient]:
    async with aiohttp.ClientSession() as session:
        yield IntrospectionClient(
            session, url="http://unused", client_id="chat", client_secret="secret",
            timeout=1, ttl=60, negative_ttl=5, max_entries=100, metrics=ChatMetrics(),
        )  # fmt: skip


async def lookup(client: IntrospectionClient, answers: HeldAnswers) -> dict[str, Any]:
    client._fetch = answers.fetch  # type: ignore[method-assign]
    return await client.introspect("a.b.c", "access_token")


async def test_revocations_of_others_during_a_lookup_leave_it_alone(
    client: IntrospectionClient,
) -> None:
    # Every logout anywhere is a revocation event; a look-up must not fail because of them.
    answers = HeldAnswers()
    pending = asyncio.create_task(lookup(client, answers))
    await answers.asked.wait()
    for n in range(10):
        client.revoked("jti", f"someone-else-{n}")
    answers.release.set()
    assert (await pending)["active"] is True
    assert (await lookup(client, answers))["active"] is True
    assert answers.calls == 1  # and the answer was cached


async def test_a_revocation_of_the_answer_during_its_lookup_makes_it_inactive(
    client: IntrospectionClient,
) -> None:
    answers = HeldAnswers()
    pending = asyncio.create_task(lookup(client, answers))
    await answers.asked.wait()
    client.revoked("sid", "s1")  # names the answer that is still on its way
    answers.release.set()
    assert (await pending) == {"active": False}
    await lookup(client, answers)
    assert answers.calls == 2  # the stale answer was not cached


async def test_missed_revocations_have_lookups_in_flight_asked_again(
    client: IntrospectionClient,
) -> None:
    answers = HeldAnswers()
    pending = asyncio.create_task(lookup(client, answers))
    await answers.asked.wait()
    client.forget_all()  # the revocation feed was down: anything may have been revoked
    answers.release.set()
    assert (await pending)["active"] is True
    assert answers.calls == 2


class Flaky:
    """An introspection client that is down until `up` is set."""

    def __init__(self) -> None:
        self.up = False

    def cached(self, token: str, hint: str) -> None:
        return None

    async def check(self, token: str) -> None:  # as signing keys that cannot tell
        return None

    def plausible(self, token: str) -> None:
        return None

    async def introspect(self, token: str, hint: str) -> dict[str, Any]:
        if not self.up:
            raise IntrospectionUnavailable("down")
        return {"active": False}


async def test_an_auth_outage_is_logged_once_not_once_per_handshake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky()
    checker = CredentialChecker(flaky, flaky, required_scope="chat")  # type: ignore[arg-type]

    async def attempt() -> Refusal | None:
        try:
            await checker.identity("a.b.c", token_type="access_token")
        except Refused as refused:
            return refused.refusal
        return None

    down, inactive = Refusal.AUTH_UNAVAILABLE, Refusal.INVALID_CREDENTIAL
    caplog.set_level(logging.INFO, logger="service.auth")
    assert [await attempt() for _ in range(5)] == [down] * 5
    flaky.up = True
    assert await attempt() == inactive  # answered (inactive): the outage is over
    flaky.up = False
    assert await attempt() == down
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "introspection unavailable",
        "introspection available again",
        "introspection unavailable",
    ]

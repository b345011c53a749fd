"""Concurrent first-time look-ups coalesced into `/introspect/batch` requests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.auth.introspection import IntrospectionClient, IntrospectionUnavailable
from service.auth.introspection_batch import LookupBatcher
from service.auth.introspection_cache import kept
from service.metrics import ChatMetrics
from tests.chat.helpers import Stack
from tests.conftest import CHAT_CLIENT, PASSWORD

Lookup = tuple[str, str]


class Asked:
    """Stands in for the auth service: records each request's look-ups, answers when told."""

    def __init__(self) -> None:
        self.batches: list[list[Lookup]] = []
        self.release = asyncio.Event()
        self.failure: Exception | None = None
        self.short = False
        self._changed = asyncio.Event()

    async def requests(self, count: int) -> None:
        """Returns once `count` requests have been made."""
        while len(self.batches) < count:
            self._changed.clear()
            await self._changed.wait()

    async def ask(self, lookups: Sequence[Lookup]) -> list[dict[str, Any]]:
        self.batches.append(list(lookups))
        self._changed.set()
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        answers = [{"active": True, "jti": token} for token, _ in lookups]
        return answers[:-1] if self.short else answers


async def test_lookups_asked_together_share_requests_of_at_most_max_batch() -> None:
    asked = Asked()
    batcher = LookupBatcher(asked.ask, max_batch=3, max_requests=2)
    pending = [asyncio.create_task(batcher.lookup(f"t{n}", "access_token")) for n in range(8)]
    await asked.requests(2)  # the two requests in flight
    assert [len(b) for b in asked.batches] == [3, 3]
    assert batcher.queued == 2  # waiting for a request to come back
    asked.release.set()
    answers = await asyncio.gather(*pending)
    assert [answer["jti"] for answer in answers] == [f"t{n}" for n in range(8)]
    assert [len(b) for b in asked.batches] == [3, 3, 2]


async def test_a_failed_request_fails_each_of_its_lookups() -> None:
    asked = Asked()
    asked.failure = aiohttp.ClientConnectionError("down")
    asked.release.set()
    batcher = LookupBatcher(asked.ask, max_batch=10, max_requests=1)
    results = await asyncio.gather(
        *(batcher.lookup(f"t{n}", "access_token") for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, aiohttp.ClientConnectionError) for result in results)


async def test_an_answer_missing_fails_the_lookups_rather_than_guessing() -> None:
    asked = Asked()
    asked.short = True
    asked.release.set()
    batcher = LookupBatcher(asked.ask, max_batch=10, max_requests=1)
    results = await asyncio.gather(
        *(batcher.lookup(f"t{n}", "access_token") for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ValueError) for result in results)


async def test_a_lookup_whose_caller_went_away_is_not_asked() -> None:
    asked = Asked()
    batcher = LookupBatcher(asked.ask, max_batch=10, max_requests=1)
    first = asyncio.create_task(batcher.lookup("t0", "access_token"))
    await asked.requests(1)
    gone = asyncio.create_task(batcher.lookup("gone", "access_token"))
    kept = asyncio.create_task(batcher.lookup("kept", "access_token"))
    await asyncio.sleep(0)
    gone.cancel()
    asked.release.set()
    assert (await first)["jti"] == "t0"
    assert (await kept)["jti"] == "kept"
    assert asked.batches[1] == [("kept", "access_token")]


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LookupBatcher(Asked().ask, max_batch=0, max_requests=1)


@pytest.fixture
async def traced(stack: Stack) -> Any:
    """An introspection client on the real auth service, and the paths it requested."""
    paths: list[str] = []

    async def on_request_start(_session: Any, _context: Any, params: Any) -> None:
        paths.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    server: TestServer = stack.auth_server
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = IntrospectionClient(
            session, url=str(server.make_url("")).rstrip("/"), client_id=CHAT_CLIENT[0],
            client_secret=CHAT_CLIENT[1], timeout=5, ttl=60, negative_ttl=5,
            max_entries=100, metrics=ChatMetrics(),
        )  # fmt: skip
        yield SimpleNamespace(client=client, paths=paths)


async def single(stack: Stack, token: str) -> dict[str, Any]:
    async with stack.auth.post(
        "/introspect",
        data={"token": token},
        headers={"Authorization": aiohttp.encode_basic_auth(*CHAT_CLIENT)},
    ) as response:
        body: dict[str, Any] = await response.json()
        return body


async def test_concurrent_first_time_lookups_make_one_batch_request(
    stack: Stack, traced: Any
) -> None:
    alice = await stack.user("alice", PASSWORD)
    bob = await stack.user("bobby", PASSWORD)
    revoked = await stack.token("bobby", PASSWORD)
    async with stack.auth.post("/revoke", data={"token": revoked["access_token"]}) as response:
        assert response.status == 200
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    forged = jwt.encode(  # bob's id in alice's token, signed by a key of nobody's
        {**claims, "sub": bob.id},
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers=jwt.get_unverified_header(alice.access_token),
    )
    tokens = [alice.access_token, bob.access_token, revoked["access_token"], forged]
    answers = await asyncio.gather(
        *(traced.client.introspect(token, "access_token") for token in tokens)
    )
    assert traced.paths == ["/introspect/batch"]
    assert traced.client.requests == len(tokens)
    # The fields the chat service keeps of each answer, as one /introspect answers them.
    assert list(answers) == [kept(await single(stack, token)) for token in tokens]
    assert [answer["active"] for answer in answers] == [True, True, False, False]
    # Answered from the cache now, as single look-ups are.
    assert await traced.client.introspect(alice.access_token, "access_token") == answers[0]
    assert traced.paths == ["/introspect/batch"]


async def test_a_lone_lookup_still_uses_introspect(stack: Stack, traced: Any) -> None:
    alice = await stack.user("alice", PASSWORD)
    answer = await traced.client.introspect(alice.access_token, "access_token")
    assert answer["active"] is True
    assert traced.paths == ["/introspect"]


async def test_a_refused_batch_fails_every_lookup_closed(stack: Stack) -> None:
    server: TestServer = stack.auth_server
    async with aiohttp.ClientSession() as session:
        client = IntrospectionClient(
            session, url=str(server.make_url("")).rstrip("/"), client_id=CHAT_CLIENT[0],
            client_secret="wrong", timeout=5, ttl=60, negative_ttl=5, max_entries=100,
            metrics=ChatMetrics(),
        )  # fmt: skip
        results = await asyncio.gather(
            *(client.introspect(f"a.b.{n}", "access_token") for n in range(3)),
            return_exceptions=True,
        )
    assert all(isinstance(result, IntrospectionUnavailable) for result in results)


async def test_a_lookup_queued_behind_a_request_that_never_ends_fails_in_time() -> None:
    asked = Asked()  # never released: the auth service accepted the requests and hung
    async with aiohttp.ClientSession() as session:
        client = IntrospectionClient(
            session, url="http://unused", client_id="chat", client_secret="secret",
            timeout=0.2, ttl=60, negative_ttl=5, max_entries=100, metrics=ChatMetrics(),
        )  # fmt: skip
        client._batcher = LookupBatcher(asked.ask, max_batch=1, max_requests=1)
        results = await asyncio.gather(
            *(client.introspect(f"a.b.{n}", "access_token") for n in range(3)),
            return_exceptions=True,
        )
    assert all(isinstance(result, IntrospectionUnavailable) for result in results)
    assert len(asked.batches) == 1  # the others never got a request of their own


async def test_an_auth_service_without_batches_is_asked_one_credential_per_request() -> None:
    """An older auth service (or a proxy passing only /introspect) answers the batch 404:
    the look-ups are asked one by one instead, and batches are not tried again for a while."""
    paths: list[str] = []

    async def introspect(request: web.Request) -> web.Response:
        paths.append(request.path)
        form = await request.post()
        return web.json_response({"active": False, "asked": str(form["token"])})

    async def no_batches(request: web.Request) -> web.Response:
        paths.append(request.path)
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_post("/introspect", introspect)
    app.router.add_post("/introspect/batch", no_batches)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        client = IntrospectionClient(
            session, url=str(server.make_url("")).rstrip("/"), client_id="chat",
            client_secret="secret", timeout=5, ttl=60, negative_ttl=5, max_entries=100,
            metrics=ChatMetrics(),
        )  # fmt: skip
        first = await asyncio.gather(
            *(client.introspect(f"a.b.{n}", "access_token") for n in range(3))
        )
        second = await asyncio.gather(
            *(client.introspect(f"c.d.{n}", "access_token") for n in range(3))
        )
    assert all(answer == {"active": False} for answer in [*first, *second])
    assert paths == ["/introspect/batch"] + ["/introspect"] * 6

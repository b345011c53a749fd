"""One subscriber connection to one Redis node, owned by one task.

The task connects, subscribes every wanted channel (classic `SUBSCRIBE`, or sharded
`SSUBSCRIBE` on a cluster), waits until Redis confirms them all, then reads. When quiet it
probes with PING, so a half-open link is noticed. On any failure it tells its owner, then
reconnects with capped, jittered exponential backoff until it is closed.

Its owner (a broker) hears, through `LinkOwner`: every message; that the link is up, with
the channels confirmed at its start; that it was lost; and that Redis ended one channel's
subscription on its own: a cluster does that when the channel's slot moves to another node
(an unsolicited `sunsubscribe`, or `MOVED` in answer to `SSUBSCRIBE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisError, ResponseError

from common.backoff import Backoff
from service.broker.base import BrokerUnavailable

log = logging.getLogger(__name__)

# What a link torn down under a command raises (redis-py raises AttributeError then, too).
LINK_ERRORS = (RedisError, OSError, AttributeError, TimeoutError, BrokerUnavailable)


class _NothingToSubscribe(Exception):
    """A link with no channel yet: a connection with no subscription cannot be probed."""


class LinkOwner(Protocol):
    def message(self, channel: str, payload: bytes) -> None:
        """A message on one of the link's channels."""

    def up(self, link: Link, channels: frozenset[str]) -> None:
        """The link (re)connected; `channels` are subscribed again (besides the fixed ones)."""

    def lost(self, link: Link) -> None:
        """The link failed; it keeps reconnecting until closed."""

    def dropped(self, link: Link, channel: str) -> None:
        """Redis ended `channel`'s subscription on its own (its slot moved elsewhere)."""


class Link:
    """See the module's docstring. `fixed` channels (classic) are subscribed for the link's
    whole life; the others come and go with `subscribe` and `unsubscribe`."""

    def __init__(
        self,
        connect: Callable[[], aioredis.Redis],
        owner: LinkOwner,
        *,
        sharded: bool,
        fixed: tuple[str, ...] = (),
        probe_interval: float = 5.0,
        subscribe_timeout: float = 5.0,
        name: str = "redis",
        address: tuple[str, int] | None = None,
    ) -> None:
        self._connect = connect
        self._owner = owner
        self._sub, self._unsub = (
            ("ssubscribe", "sunsubscribe") if sharded else ("subscribe", "unsubscribe")
        )
        self._fixed = fixed
        self._probe_interval = probe_interval
        self._subscribe_timeout = subscribe_timeout
        self.name = name
        self.address = address  # the node it is for, when fixed (a shard's primary)
        self.channels: set[str] = set()  # wanted, besides the fixed ones
        self.subscribed: set[str] = set()  # of those, confirmed by Redis on this connection
        # (subscribe kind, channel) -> resolved when Redis confirms it.
        self._confirmations: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self._closed = False
        self._ever_connected = False
        self._warned = False
        self._state = asyncio.Condition()  # notified on connects, disconnects, probe answers
        self.probes_answered = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"subscriber {self.name}")

    async def close(self) -> None:
        self._closed = True  # from here on (un)subscribe calls are no-ops or refusals
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.connected = False

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Waits until `predicate()` holds, checked at each connect, disconnect and answered
        probe (bound it with `asyncio.timeout`)."""
        async with self._state:
            await self._state.wait_for(predicate)

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis confirmed the subscription; raises `BrokerUnavailable` else.
        (A confirmation arriving after a failure finds the channel unwanted: taken back.)"""
        self.channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None or not self.connected or self._closed:
            self.channels.discard(channel)
            raise BrokerUnavailable("not connected to redis")
        try:
            await self._confirmed(self._sub, channel, pubsub)
        except Exception as exc:  # whatever the link did, the channel is not subscribed
            self.channels.discard(channel)
            raise BrokerUnavailable("could not subscribe") from exc

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is not None and self.connected and channel in self.subscribed:
            # On any failure the channel is gone anyway: a reconnect subscribes only wanted ones.
            # (One not subscribed, e.g. dropped by Redis, has nothing to undo.)
            with contextlib.suppress(*LINK_ERRORS):
                await self._confirmed(self._unsub, channel, pubsub)

    async def _confirmed(self, kind: str, channel: str, pubsub: PubSub) -> None:
        waiter = self._confirmations.get((kind, channel))
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._confirmations[(kind, channel)] = waiter
        await _command(pubsub, kind)(channel)
        await asyncio.wait_for(asyncio.shield(waiter), self._subscribe_timeout)

    # -- the task ----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            client = self._connect()
            try:
                await self._session(client, backoff)
            except asyncio.CancelledError:
                raise
            except _NothingToSubscribe:
                pass
            except Exception as exc:
                if self.connected or not (self._ever_connected or self._warned):
                    log.warning(
                        "redis subscriber link lost", extra={"link": self.name, "error": repr(exc)}
                    )
                    self._warned = True  # once per outage, not once per attempt
                if self.connected:
                    self.connected = False
                    self._owner.lost(self)
            finally:
                self.connected = False
                self.subscribed.clear()
                self._fail_confirmations()
                pubsub, self._pubsub = self._pubsub, None
                with contextlib.suppress(Exception):  # the link is broken; closing says nothing
                    if pubsub is not None:
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()
                await self._notify()
            await asyncio.sleep(backoff.next())

    async def _session(self, client: aioredis.Redis, backoff: Backoff) -> None:
        pubsub = client.pubsub()
        self._pubsub = pubsub
        if not self.channels and not self._fixed:
            raise _NothingToSubscribe  # its owner closes it, or gives it a channel first
        pending = {("subscribe", channel) for channel in self._fixed}
        if self._fixed:
            await pubsub.subscribe(*self._fixed)
        sent: set[str] = set()
        while True:  # until every wanted channel is confirmed, those added meanwhile too
            todo = self.channels - sent
            for channel in todo:  # one by one: on a cluster, one SSUBSCRIBE names one slot
                await _command(pubsub, self._sub)(channel)
                pending.add((self._sub, channel))
            sent |= todo
            await self._await_confirmations(pubsub, pending)
            await self._take_back(pubsub)
            if not self.channels - sent:
                break
        self.connected = True
        self._ever_connected = True
        backoff.reset()
        self._owner.up(self, frozenset(self.subscribed))
        await self._notify()
        last_heard = time.monotonic()
        probing = False
        while True:
            message = await self._next(pubsub, self._probe_interval)
            now = time.monotonic()
            if message is not None:
                last_heard = now
                probing = False
                self._dispatch(message)
                if message["type"] == self._sub:  # not per message: only a confirmation
                    await self._take_back(pubsub)  # can make something unwanted subscribed
                if message["type"] == "pong":
                    await self._notify()
            elif probing and now - last_heard > 2 * self._probe_interval:
                raise ConnectionError("redis subscriber did not answer a probe")
            elif now - last_heard >= self._probe_interval and not probing:
                await pubsub.ping()
                probing = True

    async def _take_back(self, pubsub: PubSub) -> None:
        """Unsubscribes what Redis confirmed after it stopped being wanted."""
        for channel in self.subscribed - self.channels:
            if (self._unsub, channel) not in self._confirmations:
                await _command(pubsub, self._unsub)(channel)
                self.subscribed.discard(channel)

    async def _next(self, pubsub: PubSub, wait: float) -> dict[str, Any] | None:
        """The next message. An error answer is one command's, not the link's: `MOVED` to a
        subscription drops that slot's channels; another refusal fails what is waiting."""
        try:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=wait)
            return message
        except (MovedError, AskError) as exc:
            self._slot_moved(exc.slot_id)
            return {"type": "moved"}
        except ResponseError as exc:  # CLUSTERDOWN, TRYAGAIN...: its caller tries again
            self._fail_confirmations(exc)
            return {"type": "refused"}

    async def _await_confirmations(self, pubsub: PubSub, pending: set[tuple[str, str]]) -> None:
        """Returns once Redis confirmed every channel: a link that accepts the connection
        but answers nothing (half-open, frozen) must not count as up."""
        limit = min(self._subscribe_timeout, 3 * self._probe_interval)
        deadline = time.monotonic() + limit
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionError("redis did not confirm the subscriptions")
            message = await self._next(pubsub, remaining)
            if message is None:
                continue
            if message["type"] == "refused":
                raise ConnectionError("redis refused a subscription")
            if message["type"] == "moved":  # dropped channels are not waited for
                pending -= {
                    (k, ch) for k, ch in pending if k == self._sub and ch not in self.channels
                }
            elif message["type"] in ("subscribe", "ssubscribe"):
                pending.discard((message["type"], message["channel"].decode()))
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "pong":  # a probe's answer; it names no channel
            self.probes_answered += 1
            return
        if kind in ("moved", "refused"):
            return
        channel = message["channel"].decode()
        if kind in ("message", "smessage"):
            self._owner.message(channel, message["data"])
            return
        fixed = channel in self._fixed
        if kind == self._sub and not fixed:
            self.subscribed.add(channel)
        elif kind == self._unsub:
            self.subscribed.discard(channel)
        waiter = self._confirmations.pop((kind, channel), None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif kind == "sunsubscribe" and channel in self.channels:
            self.channels.discard(channel)  # not asked for: the slot moved away
            self._owner.dropped(self, channel)

    def _slot_moved(self, slot: int) -> None:
        """Redis answered `MOVED` for `slot`: it serves none of its channels here. A waiting
        `subscribe` learns it by its failure; the other channels are dropped."""
        waited = set()
        for (kind, channel), waiter in list(self._confirmations.items()):
            if key_slot(channel.encode()) != slot:
                continue
            del self._confirmations[(kind, channel)]
            waited.add(channel)
            if waiter.done():
                continue
            if kind == self._unsub:
                waiter.set_result(None)  # not subscribed here: nothing left to undo
            else:
                waiter.set_exception(BrokerUnavailable("the slot moved"))
                waiter.exception()
        for channel in [c for c in self.channels if key_slot(c.encode()) == slot]:
            self.subscribed.discard(channel)
            if channel not in waited:
                self.channels.discard(channel)
                self._owner.dropped(self, channel)

    def _fail_confirmations(self, why: Exception | None = None) -> None:
        for waiter in self._confirmations.values():
            if not waiter.done():
                waiter.set_exception(BrokerUnavailable(f"redis link lost or refused: {why!r}"))
                waiter.exception()  # retrieved here: the subscriber may have given up already
        self._confirmations.clear()

    async def _notify(self) -> None:
        async with self._state:
            self._state.notify_all()


def _command(pubsub: PubSub, kind: str) -> Callable[[str], Awaitable[object]]:
    """The PubSub method for one (un)subscribe kind, so it keeps its own books straight."""
    commands: dict[str, Callable[[str], Awaitable[object]]] = {
        "subscribe": pubsub.subscribe,
        "unsubscribe": pubsub.unsubscribe,
        "ssubscribe": pubsub.ssubscribe,
        "sunsubscribe": pubsub.sunsubscribe,
    }
    return commands[kind]

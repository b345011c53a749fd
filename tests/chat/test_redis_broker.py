"""The Redis broker on the suite's Redis: subscriptions, confirmations, and its closed state."""

import asyncio

import pytest
import redis.asyncio as aioredis

from service.broker.base import BrokerUnavailable
from service.broker.redis import RedisBroker


class Recorder:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.restored = 0

    def room_message(self, room: str, payload: bytes) -> None:
        self.messages.put_nowait((room, payload))

    def event(self, channel: str, payload: bytes) -> None:
        self.messages.put_nowait((channel, payload))

    def link_restored(self, rooms: object = None) -> None:
        self.restored += 1


async def test_publish_reaches_a_confirmed_subscription(redis_url: str) -> None:
    broker = RedisBroker(redis_url, event_channels=("test:events",))
    recorder = Recorder()
    await broker.start(recorder, recorder)
    assert broker.healthy
    await broker.subscribe("lobby")
    await broker.publish("lobby", b"payload")
    assert await asyncio.wait_for(recorder.messages.get(), 5) == ("lobby", b"payload")
    await broker.unsubscribe("lobby")
    client = aioredis.Redis.from_url(redis_url)
    assert (await client.pubsub_numsub("chat:room:lobby"))[0][1] == 0
    await client.aclose()
    await broker.close()


async def test_a_closed_broker_refuses_quietly(redis_url: str) -> None:
    broker = RedisBroker(redis_url, event_channels=("test:events",))
    await broker.start(Recorder(), Recorder())
    for room in ("lobby", "hall", "den"):
        await broker.subscribe(room)
    # Shutdown races the last handlers' unsubscribes; none of them may raise.
    await asyncio.gather(broker.unsubscribe("hall"), broker.close(), broker.unsubscribe("den"))
    # A socket handler finishing during shutdown must not crash on a closed link.
    await broker.unsubscribe("lobby")
    with pytest.raises(BrokerUnavailable):
        await broker.subscribe("other")


async def test_answered_probes_keep_a_quiet_link_up(redis_url: str) -> None:
    # A PING probe's answer names no channel; taking it for a message once broke the link
    # after every quiet probe interval, and each "restored" link re-validated every socket.
    probe = 0.05
    broker = RedisBroker(redis_url, event_channels=("test:events",), probe_interval=probe)
    recorder = Recorder()
    await broker.start(recorder, recorder)
    await broker.subscribe("lobby")
    async with asyncio.timeout(40 * probe):
        await broker.wait_for(lambda: broker.probes_answered >= 3)
    assert broker.healthy
    assert (broker.reconnects, recorder.restored) == (0, 0)
    await broker.publish("lobby", b"still here")
    assert await asyncio.wait_for(recorder.messages.get(), 5) == ("lobby", b"still here")
    await broker.close()


def test_an_event_channel_is_required(redis_url: str) -> None:
    with pytest.raises(ValueError, match="event channel"):
        RedisBroker(redis_url)

"""The hub and the in-memory broker, unit level, and the whole app on the memory broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.broker.base import BrokerUnavailable
from service.broker.memory import MemoryBroker, MemoryBus
from service.hub import RoomHub


class RecordingConnection:
    """Stands in for a socket at the hub's seam: records what the hub hands it."""

    def __init__(self) -> None:
        self.rooms: set[str] = set()
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)


def member() -> Any:
    return RecordingConnection()


async def test_subscribed_exactly_while_the_room_has_members() -> None:
    bus = MemoryBus()
    hub = RoomHub(MemoryBroker(bus))
    first, second = member(), member()
    await hub.join("lobby", first)
    await hub.join("lobby", second)
    assert len(bus.subscribers["lobby"]) == 1
    await hub.leave("lobby", first)
    assert "lobby" in bus.subscribers
    await hub.leave("lobby", second)
    assert "lobby" not in bus.subscribers
    assert list(hub.rooms()) == []


async def test_delivery_hands_every_member_the_same_frame_object() -> None:
    hub = RoomHub(MemoryBroker())
    members = [member() for _ in range(3)]
    for m in members:
        await hub.join("lobby", m)
    frame = b'{"type":"message"}'
    hub.deliver("lobby", frame)
    assert all(m.frames == [frame] and m.frames[0] is frame for m in members)


async def test_failed_subscription_leaves_no_half_joined_state() -> None:
    bus = MemoryBus()
    hub = RoomHub(MemoryBroker(bus))
    bus.up = False
    m = member()
    with pytest.raises(BrokerUnavailable):
        await hub.join("lobby", m)
    assert m.rooms == set()
    assert list(hub.rooms()) == []


async def test_concurrent_join_and_leave_end_consistent() -> None:
    bus = MemoryBus()
    hub = RoomHub(MemoryBroker(bus))
    members = [member() for _ in range(20)]
    await asyncio.gather(*(hub.join("lobby", m) for m in members))
    await asyncio.gather(*(hub.leave("lobby", m) for m in members[:19]))
    assert len(hub.members("lobby")) == 1
    assert "lobby" in bus.subscribers
    await hub.leave("lobby", members[19])
    assert "lobby" not in bus.subscribers


async def test_memory_brokers_on_one_bus_fan_out_like_instances() -> None:
    bus = MemoryBus()
    hub_a, hub_b = RoomHub(MemoryBroker(bus)), RoomHub(MemoryBroker(bus))
    delivered: asyncio.Queue[str] = asyncio.Queue()
    for hub in (hub_a, hub_b):
        await hub._broker.start(_Listener(hub, delivered))
    a, b = member(), member()
    await hub_a.join("lobby", a)
    await hub_b.join("lobby", b)
    await hub_a._broker.publish("lobby", b"frame")
    for _ in range(2):
        await asyncio.wait_for(delivered.get(), 5)
    assert a.frames == [b"frame"]
    assert b.frames == [b"frame"]


class _Listener:
    def __init__(self, hub: RoomHub, delivered: asyncio.Queue[str]) -> None:
        self._hub = hub
        self._delivered = delivered

    def room_message(self, room: str, payload: bytes) -> None:
        self._hub.deliver(room, payload)
        self._delivered.put_nowait(room)

    def event(self, channel: str, payload: bytes) -> None:
        pass

    def link_restored(self) -> None:
        pass

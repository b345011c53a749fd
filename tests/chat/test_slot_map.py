"""The cluster broker's slot map: parsed from CLUSTER SLOTS, asked of whichever node answers."""

from __future__ import annotations

import socket

import pytest
from redis.crc import key_slot

from service.broker.cluster import room_channel
from service.broker.slots import NoSlotMap, parse_slots, read_slots

REPLY = [
    [0, 5460, [b"10.0.0.1", 7000, b"id1", {}], [b"10.0.0.4", 7003, b"id4", {}]],
    [10923, 16383, [b"10.0.0.3", 7002, b"id3", {}]],
    [5461, 10922, [b"10.0.0.2", 7001, b"id2", {}]],
]


def test_each_slot_is_served_by_its_ranges_primary() -> None:
    slot_map = parse_slots(REPLY)
    for room in ("lobby", "team:design", "dm:alice,bob", "x" * 100):
        slot = key_slot(room_channel(room).encode())
        expected = [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.3", 7002)][
            0 if slot <= 5460 else 1 if slot <= 10922 else 2
        ]
        assert slot_map.owner(room_channel(room)) == expected
    assert ("10.0.0.4", 7003) in slot_map.nodes  # replicas are known, to ask next time


def test_a_slot_no_range_covers_has_no_owner() -> None:
    slot_map = parse_slots([[0, 100, [b"10.0.0.1", 7000, b"id1", {}]]])
    beyond = next(f"r{n}" for n in range(1000) if key_slot(room_channel(f"r{n}").encode()) > 100)
    assert slot_map.owner(room_channel(beyond)) is None


def test_a_reply_of_another_shape_is_refused() -> None:
    with pytest.raises(NoSlotMap):
        parse_slots({"not": "a list"})


def free_port_pair() -> tuple[int, int]:
    """Two ports nothing listens on."""
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    return ports[0], ports[1]


async def test_no_reachable_node_is_a_clear_refusal() -> None:
    ports = free_port_pair()
    with pytest.raises(NoSlotMap, match=f"127.0.0.1:{ports[0]}"):
        await read_slots([("127.0.0.1", ports[0])], [("127.0.0.1", ports[1])])


async def test_a_node_outside_cluster_mode_is_skipped(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(NoSlotMap, match="cluster support disabled"):
        await read_slots([("127.0.0.1", port)], [])

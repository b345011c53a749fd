"""The chat service on a Redis Cluster of its own, through the faults a cluster has: room
channels are sharded; a primary SIGKILLed during traffic (the other shards' rooms lose
nothing and see no gap, the failed shard's rooms deliver again within 10 s, repaired from
history); a slot migrated during traffic (the moved room resubscribes on its new owner within
1 s, repaired the same way); a revocation published while a shard fails over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from chaos.local_cluster import LocalCluster, Node
from service.broker.cluster import room_channel as channel
from tests.chat.helpers import ChatUser, Client, Stack, closed_with, connect, join, receive
from tests.conftest import Store

FAILOVER_BOUND = 10.0  # seconds until the failed shard's rooms deliver again
MIGRATION_BOUND = 1.0  # seconds until a moved room is subscribed on its new owner


@pytest.fixture(autouse=True)
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of its own: these tests kill a primary or move a slot. (Autouse: set up
    before, so stopped after, the services that use it.)"""
    cluster = LocalCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def store(own_cluster: LocalCluster) -> Store:
    nodes = tuple(("127.0.0.1", node.port) for node in own_cluster.nodes[:3])
    return Store(f"redis://127.0.0.1:{nodes[0][1]}/0", nodes)


def rooms_by_primary(cluster: LocalCluster) -> dict[int, str]:
    """One room per primary (by port), found by trying names."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < 3:
        room = f"room{n}"
        found.setdefault(cluster.primary_of(channel(room)).port, room)
        n += 1
    return found


@dataclass
class Traffic:
    """Messages sent on one socket (each acknowledged or refused), as a client would."""

    ws: aiohttp.ClientWebSocketResponse
    acked: dict[str, list[int]] = field(default_factory=dict)  # room -> offsets acked
    refused: dict[str, int] = field(default_factory=dict)  # room -> `unavailable` answers
    first_ack_after: dict[str, float] = field(default_factory=dict)
    sent: int = 0

    @classmethod
    async def on(cls, chat: Client, user: ChatUser, rooms: list[str]) -> Traffic:
        ws = await connect(chat, user.access_token)
        for room in rooms:
            await join(ws, room)
        return cls(ws)

    async def send(self, room: str, text: str, since: float | None = None) -> None:
        self.sent += 1
        ref = self.sent
        await self.ws.send_json(
            {"op": "send", "room": room, "text": text, "ref": ref, "idempotency_key": text}
        )
        while True:  # the sender's own copies of the rooms' messages pass by
            frame = await receive(self.ws, FAILOVER_BOUND)
            if frame.get("ref") == ref:
                break
        if frame["type"] == "error":
            assert frame["code"] == "unavailable", frame
            self.refused[room] = self.refused.get(room, 0) + 1
            return
        assert frame["type"] == "ack", frame
        self.acked.setdefault(room, []).append(frame["offset"])
        if since is not None and room not in self.first_ack_after:
            self.first_ack_after[room] = time.monotonic() - since


async def received_until(
    ws: aiohttp.ClientWebSocketResponse, done: Any, deadline: float
) -> list[dict[str, Any]]:
    """Frames until `done(frames)` holds (within `deadline` seconds)."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(deadline):
        while not done(frames):
            frames.append(await receive(ws, deadline))
    return frames


def delivered(frames: list[dict[str, Any]], room: str) -> list[int]:
    return [f["offset"] for f in frames if f["type"] == "message" and f["room"] == room]


def gaps(frames: list[dict[str, Any]], room: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == "gap" and f["room"] == room]


async def test_room_channels_are_sharded_and_publishes_stay_in_their_shard(
    stack: Stack, alice: ChatUser, bob: ChatUser, own_cluster: LocalCluster, store: Store
) -> None:
    rooms = list(rooms_by_primary(own_cluster).values())
    listener = await connect(stack.b, alice.access_token)
    for room in rooms:
        await join(listener, room)
    for room in rooms:
        assert await store.subscribers(channel(room)) == 1  # PUBSUB SHARDNUMSUB on its owner
    for node in own_cluster.nodes:  # no classic subscription to a room anywhere
        numsub = node.client().pubsub_numsub(*map(channel, rooms))
        assert [int(n) for _, n in numsub] == [0, 0, 0]
    before = [_publish_sent(node) for node in own_cluster.nodes]
    traffic = await Traffic.on(stack.a, bob, rooms)
    for n in range(10):
        for room in rooms:
            await traffic.send(room, f"m{n}")
    frames = await received_until(
        listener, lambda f: all(10 in delivered(f, room) for room in rooms), 10
    )
    for room in rooms:
        assert delivered(frames, room) == list(range(1, 11))
    # Classic PUBLISH is copied over the cluster bus to every node; sharded is not.
    assert [_publish_sent(node) for node in own_cluster.nodes] == before
    await listener.close()


def _publish_sent(node: Node) -> int:
    info = node.client().execute_command("CLUSTER INFO")
    return int(info.get("cluster_stats_messages_publish_sent", 0))


async def test_a_primary_killed_during_traffic(
    stack: Stack, alice: ChatUser, bob: ChatUser, own_cluster: LocalCluster
) -> None:
    by_primary = rooms_by_primary(own_cluster)
    listener = await connect(stack.b, alice.access_token)
    for room in by_primary.values():
        await join(listener, room)
    traffic = await Traffic.on(stack.a, bob, list(by_primary.values()))
    for n in range(5):
        for room in by_primary.values():
            await traffic.send(room, f"before {n}")
    # A primary no instance's event link is on: both stay ready throughout.
    victim = _event_link_primary(own_cluster, with_link=False)
    doomed = by_primary[victim.port]
    spared = [room for port, room in by_primary.items() if port != victim.port]
    # Its tokens' and sessions' records are on its replica (a failover may lose the last
    # writes: that is the room-history part of this test, not the tokens').
    await asyncio.to_thread(own_cluster.wait_replicated, victim)
    await asyncio.to_thread(own_cluster.kill, victim)
    killed_at = time.monotonic()
    n = 0
    while doomed not in traffic.first_ack_after or n < 20:
        assert time.monotonic() - killed_at < FAILOVER_BOUND, "the failed shard did not return"
        for room in by_primary.values():
            await traffic.send(room, f"after {n}", since=killed_at)
        for chat in (stack.a, stack.b):  # one shard's failover takes no instance out of service
            async with chat.get("/readyz") as ready:
                assert ready.status == 200, await ready.text()
        n += 1
        await asyncio.sleep(0.05)  # a steady rate through the failover, not a wait for it

    def complete(frames: list[dict[str, Any]]) -> bool:
        return all(
            max(traffic.acked[room]) in delivered(frames, room) for room in by_primary.values()
        )

    frames = await received_until(listener, complete, FAILOVER_BOUND)
    for room in spared:  # nothing lost, nothing twice, in order, no gap
        assert traffic.refused.get(room, 0) == 0
        assert delivered(frames, room) == traffic.acked[room]
        assert gaps(frames, room) == []
    # The failed shard: in order, nothing twice, every offset delivered or announced in a
    # gap; if its replica had not received the room's history yet (replication is
    # asynchronous), the room starts a new epoch and says so (a `reset` gap). Everything
    # acknowledged in the room's last epoch is delivered.
    epochs = _epochs([f for f in frames if f.get("room") == doomed])
    for offsets, announced in epochs:
        assert offsets == sorted(set(offsets))
        assert set(range(offsets[0], offsets[-1] + 1)) <= set(offsets) | announced
    acked = traffic.acked[doomed]
    last_epoch = acked[max(n for n in range(len(acked)) if n == 0 or acked[n] < acked[n - 1]) :]
    assert set(last_epoch) <= set(epochs[-1][0])
    assert traffic.first_ack_after[doomed] < FAILOVER_BOUND
    await listener.close()


async def test_a_migrated_slot_is_followed_within_a_second(
    stack: Stack, alice: ChatUser, bob: ChatUser, own_cluster: LocalCluster, store: Store
) -> None:
    by_primary = rooms_by_primary(own_cluster)
    source_port, room = next(iter(by_primary.items()))
    target_port = next(port for port in by_primary if port != source_port)
    source, target = (_node(own_cluster, port) for port in (source_port, target_port))
    listener = await connect(stack.b, alice.access_token)
    await join(listener, room)
    traffic = await Traffic.on(stack.a, bob, [room])
    for n in range(5):
        await traffic.send(room, f"before {n}")

    moved_at = await asyncio.to_thread(_migrate, source, target, channel(room))
    # Both instances have members in the room: both subscribe on its new owner.
    resubscribed = await asyncio.to_thread(_subscribed_on, target, channel(room), 2) - moved_at
    for n in range(5):
        await traffic.send(room, f"after {n}")
    frames = await received_until(
        listener, lambda f: max(traffic.acked[room]) in delivered(f, room), 10
    )
    assert delivered(frames, room) == traffic.acked[room]  # repaired: nothing lost or twice
    assert gaps(frames, room) == []
    assert resubscribed < MIGRATION_BOUND
    await listener.close()


def _epochs(frames: list[dict[str, Any]]) -> list[tuple[list[int], set[int]]]:
    """A room's messages and announced gaps, split where a `reset` gap starts an epoch."""
    epochs: list[tuple[list[int], set[int]]] = [([], set())]
    for frame in frames:
        if frame["type"] == "gap" and frame.get("reset"):
            epochs.append(([], set()))
        elif frame["type"] == "gap":
            epochs[-1][1].update(range(frame["from"], frame["to"] + 1))
        elif frame["type"] == "message":
            epochs[-1][0].append(frame["offset"])
    return [epoch for epoch in epochs if epoch[0]]


def _node(cluster: LocalCluster, port: int) -> Node:
    return next(node for node in cluster.nodes if node.port == port)


def _migrate(source: Node, target: Node, key: str) -> float:
    """Moves `key`'s slot from `source` to `target` as `redis-cli --cluster reshard` does;
    returns when ownership changed (time.monotonic())."""
    src, dst = source.client(), target.client()
    slot = int(src.execute_command("CLUSTER KEYSLOT", key))
    src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    dst.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
    src.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
    return time.monotonic()


def _subscribed_on(node: Node, name: str, subscribers: int) -> float:
    """When `node` first showed `subscribers` sharded ones of `name` (polled for 2 bounds)."""
    client = node.client()
    deadline = time.monotonic() + 2 * MIGRATION_BOUND
    while time.monotonic() < deadline:
        if [int(n) for _, n in client.pubsub_shardnumsub(name)] == [subscribers]:
            return time.monotonic()
        time.sleep(0.01)  # polling another process's state
    raise AssertionError(f"{name} not subscribed on its new owner")


async def test_a_revocation_during_a_failover_still_closes_the_socket(
    stack: Stack, alice: ChatUser, bob: ChatUser, own_cluster: LocalCluster
) -> None:
    chats = [stack.a, stack.b]
    doomed = [await connect(chat, alice.access_token) for chat in chats]
    keeper = await connect(stack.b, bob.access_token)
    victim = _event_link_primary(own_cluster)
    await asyncio.to_thread(own_cluster.wait_replicated, victim)  # the tokens' records
    await asyncio.to_thread(own_cluster.kill, victim)
    async with asyncio.timeout(FAILOVER_BOUND):
        while True:  # the auth service answers 503 while the revoked token's shard fails over
            async with stack.auth.post("/revoke", data={"token": alice.access_token}) as r:
                if r.status == 200:
                    break
                assert r.status == 503, await r.text()
            await asyncio.sleep(0.1)  # a client's retry pace
    for ws in doomed:
        assert await closed_with(ws, FAILOVER_BOUND) == 4003
    await keeper.send_json({"op": "ping"})
    assert await receive(keeper, FAILOVER_BOUND) == {"type": "pong"}
    await keeper.close()


def _event_link_primary(cluster: LocalCluster, *, with_link: bool = True) -> Node:
    """A primary that an instance's event link (two classic channels) is on, so that its
    loss is what that link must survive (any primary if they all chose replicas); or, not
    `with_link`, one that none is on (two links, three primaries: there is one)."""
    primaries = [node for node in cluster.nodes if _role(node) == "master"]
    for node in primaries:
        clients = node.client().execute_command("CLIENT LIST TYPE pubsub")
        if ("sub=2" in str(clients)) == with_link:
            return node
    assert with_link
    return primaries[0]


def _role(node: Node) -> str:
    return str(node.client().info("replication")["role"])

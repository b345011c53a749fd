"""The Redis Cluster broker: sharded pub/sub, one subscriber connection per shard primary.

A room's channel is `chat:{room:<room>}:channel`, in the room's slot, so a room's history
script publishes on it with `SPUBLISH` in the same single-slot step as it appends. A cluster
sends a sharded message only to the shard that owns its slot (classic `PUBLISH` is copied to
every node), which is what lets room traffic grow with the shards.

This process holds one `Link` per primary that owns a slot of a room it has members in, and
one more, classic, for the event channels (revocations, control), on any node: a classic
message reaches every node of a cluster.

When a link fails or Redis ends a room's subscription on its own (a failover, a migrated
slot), the rooms it carried are lost until placed again: the broker reads the slot map afresh
(asking first the node that dropped them), subscribes each room on the primary that now owns
it, and tells the hub which rooms were restored, so those, and only those, repair from history.
Rooms on other shards are not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.backoff import Backoff
from common.redis import connect_cluster
from service.broker.base import BrokerUnavailable, EventListener, RoomListener
from service.broker.events import EventLink
from service.broker.link import Link
from service.broker.redis import subscriber
from service.broker.slots import SPREAD, Address, NoSlotMap, SlotMap, read_slots

log = logging.getLogger(__name__)

CHANNEL_HEAD, CHANNEL_TAIL = "chat:{room:", "}:channel"


def room_channel(room: str) -> str:
    """A room's sharded channel, in the room's slot (its hash tag is the room keys')."""
    return CHANNEL_HEAD + room + CHANNEL_TAIL


@dataclass
class Shard:
    link: Link
    rooms: set[str] = field(default_factory=set)  # placed here, subscribed or on their way


class ClusterBroker:
    """`Broker` on a Redis Cluster's sharded pub/sub (see the module's docstring)."""

    sharded = True

    def __init__(
        self,
        seeds: tuple[Address, ...],
        *,
        event_channels: tuple[str, ...],
        probe_interval: float = 5.0,
        subscribe_timeout: float = 5.0,
        password: str | None = None,
    ) -> None:
        self._seeds = seeds
        self._password = password
        self._publisher = connect_cluster(seeds, decode=False, password=password)
        self._probe_interval = probe_interval
        self._subscribe_timeout = subscribe_timeout
        self._map: SlotMap | None = None
        self._shards: dict[Address, Shard] = {}
        self._placed: dict[str, Address] = {}  # room -> the shard it is placed on
        self._rooms: set[str] = set()  # wanted
        self._lost: set[str] = set()  # wanted, but their subscription lapsed
        self._dropped_at: list[Address] = []  # nodes that dropped rooms: asked first
        self._events = EventLink(
            self._any_node,
            event_channels,
            probe_interval=probe_interval,
            subscribe_timeout=subscribe_timeout,
        )
        self._rooms_listener: RoomListener | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # links of shards left
        self._subscribing: set[str] = set()  # rooms a `subscribe` call is placing
        self._closed = False
        self.reconnects = 0  # times rooms were restored after a lapse

    # -- the Broker seam -----------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Ready to serve: the event link is up. A shard failing over pauses its rooms only
        (they are placed again when it is back); it must not take every instance out of a
        load balancer's rotation."""
        return self._events.link.connected

    def links(self) -> dict[str, bool]:
        """The event link, and one link per shard primary this process has rooms on."""
        states = {shard.link.name: shard.link.connected for shard in self._shards.values()}
        states[self._events.link.name] = self._events.link.connected
        return states

    def channel(self, room: str) -> str:
        return room_channel(room)

    async def start(self, rooms: RoomListener, events: EventListener, *, wait: float = 5.0) -> None:
        self._rooms_listener = rooms
        with contextlib.suppress(NoSlotMap):
            self._map = await read_slots((), self._seeds, self._password)
        self._events.start(events)
        self._task = asyncio.create_task(self._keep_placed(), name="cluster placement")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._events.link.wait_for(lambda: self._events.link.connected)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        shards, self._shards = list(self._shards.values()), {}
        links = [self._events.link, *(shard.link for shard in shards)]
        closing = [link.close() for link in links]
        await asyncio.gather(*closing, *self._closing, return_exceptions=True)
        await self._publisher.aclose()

    async def subscribe(self, room: str) -> None:
        if self._closed:
            raise BrokerUnavailable("the broker is closed")
        self._rooms.add(room)
        self._subscribing.add(room)  # the placement loop leaves it to this call
        try:
            for attempt in range(2):  # once more after a MOVED: the map was stale
                shard = await self._place(room)
                try:
                    await self._connected(shard.link)
                    await shard.link.subscribe(self.channel(room))
                    self._lost.discard(room)  # a drop meanwhile was this call's to handle
                    return
                except BrokerUnavailable:
                    self._unplace(room)
                    if attempt == 1 or self._map is None or self._closed:
                        raise
                    self._map = await read_slots(_at(shard.link), self._known(), self._password)
        except (BrokerUnavailable, NoSlotMap) as exc:
            self._rooms.discard(room)
            self._lost.discard(room)
            raise BrokerUnavailable("could not subscribe") from exc
        finally:
            self._subscribing.discard(room)

    async def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
        self._lost.discard(room)
        address = self._placed.get(room)
        if address is not None and address in self._shards:
            shard = self._shards[address]
            self._unplace(room, keep_link=True)
            await shard.link.unsubscribe(self.channel(room))
            self._close_if_unused(address)

    async def publish(self, room: str, payload: bytes) -> None:
        try:
            await self._publisher.execute_command("SPUBLISH", self.channel(room), payload)
        except RedisError as exc:
            raise BrokerUnavailable("could not publish") from exc

    # -- placing rooms on shards ---------------------------------------------------------------

    async def _place(self, room: str) -> Shard:
        """The shard `room` belongs on now, with a link (new ones connect in the background)."""
        if self._map is None:
            self._map = await read_slots((), self._known(), self._password)
        owner = self._map.owner(self.channel(room))
        if owner is None:
            raise BrokerUnavailable("no node serves the room's slot")
        return self._place_on(room, owner)

    def _place_on(self, room: str, owner: Address) -> Shard:
        if self._closed:
            raise BrokerUnavailable("the broker is closed")
        shard = self._shards.get(owner)
        if shard is None:
            link = Link(
                lambda: subscriber(f"redis://{owner[0]}:{owner[1]}", self._password),
                self,
                sharded=True,
                probe_interval=self._probe_interval,
                subscribe_timeout=self._subscribe_timeout,
                name=f"{owner[0]}:{owner[1]}",
                address=owner,
            )
            shard = self._shards[owner] = Shard(link)
            link.start()
        shard.rooms.add(room)
        # Wanted on the link from now: a link still connecting subscribes it at its start.
        shard.link.channels.add(room_channel(room))
        self._placed[room] = owner
        return shard

    def _unplace(self, room: str, *, keep_link: bool = False) -> None:
        address = self._placed.pop(room, None)
        if address is None or address not in self._shards:
            return
        shard = self._shards[address]
        shard.rooms.discard(room)
        shard.link.channels.discard(self.channel(room))
        if not keep_link:
            self._close_if_unused(address)

    def _close_if_unused(self, address: Address) -> None:
        shard = self._shards.get(address)
        if shard is not None and not shard.rooms:
            del self._shards[address]
            closing = asyncio.create_task(shard.link.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _connected(self, link: Link) -> None:
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                await link.wait_for(lambda: link.connected)
        except TimeoutError as exc:
            raise BrokerUnavailable(f"no link to {link.name}") from exc

    async def _keep_placed(self) -> None:
        """Places lost rooms again whenever some are lost, until none is (with backoff)."""
        backoff = Backoff(base=0.05, cap=1.0)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._lost and not self._closed:
                try:
                    await self._place_lost()
                except (NoSlotMap, BrokerUnavailable, RedisError, OSError) as exc:
                    log.info(
                        "rooms not placed yet", extra={"rooms": len(self._lost), "error": repr(exc)}
                    )
                except Exception:  # a bug must not end the placing of rooms for good
                    log.exception("placing rooms failed; trying again")
                if not self._lost:
                    backoff.reset()
                    break
                await asyncio.sleep(backoff.next())

    async def _place_lost(self) -> None:
        prefer, self._dropped_at = self._dropped_at, []
        self._map = await read_slots(prefer, self._known(), self._password)
        restored: list[str] = []
        for room in list(self._lost):
            if room not in self._rooms:
                self._lost.discard(room)
                continue
            if room in self._subscribing:
                continue  # a join is placing it
            channel = self.channel(room)
            owner = self._map.owner(channel)
            if owner is None:
                continue  # that shard is failing over: next round
            if self._placed.get(room) != owner:
                self._unplace(room)
            shard = self._place_on(room, owner)
            if not shard.link.connected:
                continue  # subscribed when it connects (`up` tells)
            if channel not in shard.link.subscribed:
                try:
                    await shard.link.subscribe(channel)
                except BrokerUnavailable:
                    continue
            if room in self._lost and room in self._rooms:
                self._lost.discard(room)
                restored.append(room)
        self._restored(restored)

    def _restored(self, rooms: list[str]) -> None:
        if rooms:
            self.reconnects += 1
            log.info("rooms subscribed again", extra={"rooms": len(rooms)})
            assert self._rooms_listener is not None
            self._rooms_listener.link_restored(rooms)

    def _known(self) -> set[Address]:
        return set(self._seeds) | (set(self._map.nodes) if self._map else set())

    def _any_node(self) -> aioredis.Redis:
        host, port = SPREAD.choice(sorted(self._known()))
        return subscriber(f"redis://{host}:{port}", self._password)

    # -- what the shard links tell ---------------------------------------------------------------

    def message(self, channel: str, payload: bytes) -> None:
        if channel.startswith(CHANNEL_HEAD) and channel.endswith(CHANNEL_TAIL):
            assert self._rooms_listener is not None
            self._rooms_listener.room_message(
                channel[len(CHANNEL_HEAD) : -len(CHANNEL_TAIL)], payload
            )

    def up(self, link: Link, channels: frozenset[str]) -> None:
        rooms = [room for room in self._lost if self.channel(room) in channels]
        self._lost.difference_update(rooms)
        self._restored(rooms)

    def lost(self, link: Link) -> None:
        address = link.address
        shard = self._shards.get(address) if address is not None else None
        if shard is not None and shard.link is link:
            self._lose(shard.rooms, None)  # that node may be dead: not the one to ask first

    def dropped(self, link: Link, channel: str) -> None:
        room = channel[len(CHANNEL_HEAD) : -len(CHANNEL_TAIL)]
        if room in self._rooms:
            self._lose({room}, link.address)  # alive, and it knows where the slot went

    def _lose(self, rooms: set[str], at: Address | None) -> None:
        self._lost.update(rooms & self._rooms)
        if at is not None:
            self._dropped_at.append(at)
        self._wake.set()


def _at(link: Link) -> list[Address]:
    return [link.address] if link.address is not None else []

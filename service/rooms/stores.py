"""Everything rooms keep in Redis, built once per process on one client."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from common.redis import RedisClient
from service.instances import InstanceLease
from service.rooms.history import RoomHistory
from service.rooms.presence import PresenceStore
from service.rooms.presence_tracker import PresenceTracker
from service.rooms.private import PrivateRooms
from service.settings import ChatSettings
from service.user_sockets import UserSockets


@dataclass(frozen=True)
class RoomStores:
    history: RoomHistory
    private: PrivateRooms
    presence: PresenceStore
    tracker: PresenceTracker
    lease: InstanceLease
    user_sockets: UserSockets
    publish: Callable[[str, bytes], Awaitable[Any]]  # a raw PUBLISH (control events)


def room_stores(
    redis: RedisClient,
    settings: ChatSettings,
    channel_of: Callable[[str], str],
    *,
    sharded: bool = False,
) -> RoomStores:
    """`channel_of`: a room's channel; `sharded`: published on with SPUBLISH (a cluster)."""
    # One lease per process: a restarted instance is a new one (its old lease lapses).
    lease = InstanceLease(
        redis, f"{settings.instance_id}-{secrets.token_hex(3)}", lease=settings.instance_lease
    )
    presence = PresenceStore(redis, sharded=sharded)
    return RoomStores(
        history=RoomHistory(redis, idempotency_ttl=settings.idempotency_ttl, sharded=sharded),
        private=PrivateRooms(redis, channel_of, sharded=sharded),
        presence=presence,
        tracker=PresenceTracker(presence, lease, channel_of, grace=settings.presence_grace),
        lease=lease,
        user_sockets=UserSockets(redis, lease, settings.max_connections_per_user),
        publish=redis.publish,
    )

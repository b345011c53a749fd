"""Every script and transaction of both services touches keys of one cluster slot only (a
Redis Cluster refuses anything else with CROSSSLOT). The keys come from the same functions
the code uses; the slot is Redis's own (CRC16 of the hash tag or the whole key)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from auth_service.grants import grants_key
from auth_service.keys import ACTIVE_KID, KEYS_HASH
from auth_service.ratelimit import _keys as throttle_keys
from auth_service.refresh import (
    family_in,
    family_key,
    legacy_family_key,
    legacy_record_key,
    record_key,
)
from auth_service.revocation import jti_key
from service.broker.cluster import room_channel
from service.instances import INSTANCES
from service.rooms.history import history_key, idempotency_key, meta_key
from service.rooms.presence import instance_key, names_key, presence_key
from service.rooms.private import members_key, owner_key
from service.user_sockets import sockets_key

ROOM, USER, INSTANCE = "team:design", "6f1c0d2e", "a1b2c3d4-9f8e7d"
FAMILY = "0123456789abcdef0123456789abcdef"
TOKEN, SUCCESSOR = f"rt_{FAMILY}." + "a" * 43, f"rt_{FAMILY}." + "b" * 43

# Each operation that sends several keys to Redis at once (a script's KEYS, a MULTI), named
# by where it is, with the keys it sends.
TOGETHER: dict[str, list[str]] = {
    "chat: publish with history (history._PUBLISH, SPUBLISH on the room's channel)": [
        meta_key(ROOM), history_key(ROOM), idempotency_key(ROOM, USER, "k"), room_channel(ROOM)
    ],
    "chat: publish once without history (history._PUBLISH_ONCE)": [
        idempotency_key(ROOM, USER, "k"), room_channel(ROOM)
    ],
    "chat: read the tail (history._TAIL)": [meta_key(ROOM), history_key(ROOM)],
    "chat: create a private room (private._CREATE)": [owner_key(ROOM), members_key(ROOM)],
    "chat: add a member (private._ADD)": [owner_key(ROOM), members_key(ROOM)],
    "chat: remove a member (private._REMOVE)": [members_key(ROOM), room_channel(ROOM)],
    "chat: delete a room (private._DELETE)": [
        owner_key(ROOM), members_key(ROOM), history_key(ROOM), meta_key(ROOM), room_channel(ROOM)
    ],
    "chat: enter, exit, reap presence (presence._ENTER/_EXIT/_REAP)": [
        presence_key(ROOM), names_key(ROOM), instance_key(ROOM, INSTANCE), room_channel(ROOM)
    ],
    "chat: admit a user's socket (user_sockets._ADMIT)": [sockets_key(USER)],
    "chat: renew a lease (instances._RENEW)": [INSTANCES],
    "auth: ensure an active key, retire a key (keys._ENSURE_ACTIVE/_RETIRE)": [
        KEYS_HASH, ACTIVE_KID
    ],
    "auth: reserve and finish a password check, per account (ratelimit._RESERVE)": list(
        throttle_keys("user", "alice")
    ),
    "auth: the same per address": list(throttle_keys("addr", "192.0.2.1")),
    "auth: add a grant (grants MULTI)": [grants_key(USER)],
    "auth: deny an access token (revocation._DENY_AND_ANNOUNCE)": [jti_key("j1")],
    "auth: start a family and its first token (refresh MULTI)": [
        family_key(FAMILY), record_key(FAMILY, TOKEN)
    ],
    "auth: rotate a refresh token (refresh._ROTATE)": [
        record_key(FAMILY, TOKEN), record_key(FAMILY, SUCCESSOR), family_key(FAMILY)
    ],
    "auth: revoke a family (refresh._REVOKE_FAMILY)": [family_key(FAMILY)],
    "auth: revoke a family from before the tag": [legacy_family_key(FAMILY)],
    "auth: copy an earlier token's record (refresh._COPY_IF_ABSENT)": [
        record_key(FAMILY, "rt_" + "c" * 43)
    ],
    "auth: read an earlier token's record": [legacy_record_key("rt_" + "c" * 43)],
}  # fmt: skip


def _slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


@pytest.mark.parametrize("operation", sorted(TOGETHER))
def test_the_keys_used_together_share_one_slot(operation: str) -> None:
    assert len(_slots(TOGETHER[operation])) == 1, TOGETHER[operation]


def test_a_refresh_token_names_its_family() -> None:
    assert family_in(TOKEN) == FAMILY
    assert family_in("rt_" + "c" * 43) is None  # from before the family was in the token


def test_a_rooms_keys_follow_the_room_not_one_slot_for_all() -> None:
    slots = {key_slot(meta_key(f"room{n}").encode()) for n in range(100)}
    assert len(slots) > 50  # rooms spread over the cluster

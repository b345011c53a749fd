"""Every script and transaction of both services touches keys of one cluster slot only (a
Redis Cluster refuses anything else with CROSSSLOT). The keys come from the same functions
the code uses; the slot is Redis's own (CRC16 of the hash tag or the whole key)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from auth_service.grants import grants_key
from auth_service.keys import ACTIVE_KID, KEYS_HASH
from auth_service.ratelimit import _keys as throttle_keys
from auth_service.revocation import jti_key
from auth_service.tokens import _token_key, family_key
from service.instances import INSTANCES
from service.rooms.history import history_key, idempotency_key, meta_key
from service.rooms.presence import instance_key, names_key, presence_key
from service.rooms.private import members_key, owner_key
from service.user_sockets import sockets_key

ROOM, USER, INSTANCE = "team:design", "6f1c0d2e", "a1b2c3d4-9f8e7d"

# Each operation that sends several keys to Redis at once (a script's KEYS, a MULTI), named
# by where it is, with the keys it sends.
TOGETHER: dict[str, list[str]] = {
    "chat: publish with history (history._PUBLISH)": [
        meta_key(ROOM), history_key(ROOM), idempotency_key(ROOM, USER, "k")
    ],
    "chat: read the tail (history._TAIL)": [meta_key(ROOM), history_key(ROOM)],
    "chat: create a private room (private._CREATE)": [owner_key(ROOM), members_key(ROOM)],
    "chat: add a member (private._ADD)": [owner_key(ROOM), members_key(ROOM)],
    "chat: delete a room (private._DELETE)": [
        owner_key(ROOM), members_key(ROOM), history_key(ROOM), meta_key(ROOM)
    ],
    "chat: enter, exit, reap presence (presence._ENTER/_EXIT/_REAP)": [
        presence_key(ROOM), names_key(ROOM), instance_key(ROOM, INSTANCE)
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
    "auth: start a family (tokens MULTI)": [family_key("f1")],
    "auth: store a refresh token (tokens MULTI)": [_token_key("rt_" + "a" * 43)],
}  # fmt: skip

# Still spanning slots, to be moved onto one (each is named in the cluster issue's note):
# the refresh-token rotation reads the old and the new token's records and writes the family
# and the user's grants, keyed by token hash, family and user.
STILL_CROSS_SLOT: dict[str, list[str]] = {
    "auth: rotate a refresh token (tokens._ROTATE)": [
        _token_key("rt_" + "a" * 43), _token_key("rt_" + "b" * 43), family_key("f1"),
        grants_key(USER),
    ],
}  # fmt: skip


def _slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


@pytest.mark.parametrize("operation", sorted(TOGETHER))
def test_the_keys_used_together_share_one_slot(operation: str) -> None:
    assert len(_slots(TOGETHER[operation])) == 1, TOGETHER[operation]


@pytest.mark.parametrize("operation", sorted(STILL_CROSS_SLOT))
def test_what_still_spans_slots_is_known(operation: str) -> None:
    # When this fails, the operation was moved onto one slot: move it to TOGETHER.
    assert len(_slots(STILL_CROSS_SLOT[operation])) > 1


def test_a_rooms_keys_follow_the_room_not_one_slot_for_all() -> None:
    slots = {key_slot(meta_key(f"room{n}").encode()) for n in range(100)}
    assert len(slots) > 50  # rooms spread over the cluster

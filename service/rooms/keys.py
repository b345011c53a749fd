"""Where a room's state lives in Redis. Every key of one room shares the hash tag
`{room:<room>}`, so one script can touch all of them in one cluster slot."""

from __future__ import annotations


def room_key(room: str, part: str) -> str:
    return f"chat:{{room:{room}}}:{part}"


def publishing(script: str, *, sharded: bool) -> str:
    """A room script as it runs: on a cluster its `PUBLISH` on the room's channel becomes
    `SPUBLISH` (sharded pub/sub; the channel is in the room's slot, so the script stays
    single-slot). Everything else about the script is the same."""
    return script.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',") if sharded else script

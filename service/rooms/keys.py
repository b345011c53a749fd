"""Where a room's state lives in Redis. Every key of one room shares the hash tag
`{room:<room>}`, so one script can touch all of them in one cluster slot."""

from __future__ import annotations


def room_key(room: str, part: str) -> str:
    return f"chat:{{room:{room}}}:{part}"

"""What a room remembers, in Redis: its messages in offset order, and its epoch.

Per room (all keys share the hash tag `{room:<room>}`, so each script touches one cluster
slot): `chat:{room:R}:meta`, a hash with the room's `epoch` and last `offset`, and
`chat:{room:R}:history`, a Redis Stream whose entry ids are `0-<offset>` (so a range by
offset is a range by id) holding each message's frame and its time.

A Stream, because offsets are its ids (`XRANGE` after an offset is the replay, `XREVRANGE`
before one is a page of history), `MAXLEN` keeps `history_size` in the same command that
appends, and it costs one entry per message with no second index. Time (`history_ttl`) is
enforced as messages are appended (the oldest that outlived it are trimmed) and as they are
read (any such left are treated as gone).

`publish` assigns the offset, appends to history and publishes to the room's channel in
one script: offsets have no holes, a message is in history before anyone can receive it,
and every member everywhere sees one order. An idempotency key makes a repeated send
publish nothing and answer the first offset and id.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

from common.redis import RedisClient
from service.rooms.keys import publishing, room_key

# A room's epoch outlives its messages: a client back after a quiet spell longer than the
# messages' TTL finds its offsets still valid and learns exactly what it missed.
META_TTL_FLOOR = 7 * 86400

_PUBLISH = """
if #KEYS == 3 then
  local prior = redis.call('GET', KEYS[3])
  if prior then return {'repeat', prior} end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[8]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local frame = ARGV[2] .. offset .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '0-' .. offset, 'f', frame, 't', ARGV[6])
local horizon = tonumber(ARGV[6]) - tonumber(ARGV[5]) * 1000
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if tonumber(first[1][2][4]) < horizon then
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 16)
  local keep = nil
  for _, entry in ipairs(oldest) do
    if tonumber(entry[2][4]) >= horizon then keep = entry[1]; break end
  end
  if keep == nil then keep = '0-' .. (tonumber(string.sub(oldest[#oldest][1], 3)) + 1) end
  redis.call('XTRIM', KEYS[2], 'MINID', keep)
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[9])
if #KEYS == 3 then redis.call('SET', KEYS[3], offset .. ' ' .. ARGV[10], 'EX', ARGV[7]) end
redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. offset .. ' ' .. frame)
return {'ok', offset, epoch}
"""
"""KEYS: meta, history[, idempotency key]. ARGV: channel, frame before the offset, frame
after it, history_size, history_ttl (s), now (ms), idempotency TTL (s), a new epoch (used if
the room has none), meta TTL (s), the message id. Returns {'ok', offset, epoch} or
{'repeat', '<offset> <id>'}."""

_TAIL = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
local offset = redis.call('HGET', KEYS[1], 'offset')
return {epoch, offset, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])}
"""
"""KEYS: meta, history. ARGV: a new epoch (used if the room has none), the most entries,
meta TTL. Returns {epoch, last offset, newest entries (newest first)}."""


_PUBLISH_ONCE = """
local prior = redis.call('GET', KEYS[1])
if prior then return {'repeat', prior} end
redis.call('SET', KEYS[1], '- ' .. ARGV[4], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {'ok'}
"""
"""A room without history, with an idempotency key. KEYS: the key. ARGV: channel, frame,
idempotency TTL (s), message id."""


def meta_key(room: str) -> str:
    return room_key(room, "meta")


def history_key(room: str) -> str:
    return room_key(room, "history")


def idempotency_key(room: str, user_id: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]  # any text: a fixed-size key
    return room_key(room, f"idem:{user_id}:{digest}")


def new_epoch() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Stored:
    """One message as history keeps it: its offset, its frame (bytes), when it was sent."""

    offset: int
    frame: bytes
    sent_ms: int


@dataclass(frozen=True)
class Published:
    """What `publish` did: the offset and id of the message (the first one's, for a repeat);
    no offset in a room without history."""

    offset: int | None
    message_id: str
    epoch: str | None
    repeat: bool


@dataclass(frozen=True)
class Tail:
    """A room's epoch and last offset, and its newest retained messages, oldest first."""

    epoch: str
    offset: int
    messages: list[Stored]

    @property
    def first(self) -> int:
        """The oldest offset in `messages` (offset + 1 when there are none)."""
        return self.messages[0].offset if self.messages else self.offset + 1


def _stored(entry: Any) -> Stored:
    """A stream entry as a script returns it (a flat field list) or redis-py does (a dict)."""
    entry_id, fields = entry
    if not isinstance(fields, dict):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return Stored(int(entry_id.split(b"-")[1]), fields[b"f"], int(fields[b"t"]))


class RoomHistory:
    """Appends to and reads rooms' histories (one Redis; see the module's docstring)."""

    def __init__(self, redis: RedisClient, *, idempotency_ttl: int, sharded: bool = False) -> None:
        # Raw bytes: a stored frame goes to sockets exactly as it was written.
        self._redis = redis
        self._idempotency_ttl = idempotency_ttl
        self._publish_command = "SPUBLISH" if sharded else "PUBLISH"
        self._publish = redis.register_script(publishing(_PUBLISH, sharded=sharded))
        self._publish_once = redis.register_script(publishing(_PUBLISH_ONCE, sharded=sharded))
        self._tail = redis.register_script(_TAIL)

    async def publish(
        self,
        room: str,
        channel: str,
        frame: tuple[bytes, bytes],
        *,
        message_id: str,
        size: int,
        ttl: int,
        idempotency: tuple[str, str] | None = None,
    ) -> Published:
        """Appends the message whose frame is `frame[0] + <offset> + frame[1]` and publishes
        `<epoch> <offset> <frame>` on `channel`, in one step. `idempotency`: (user id, key)."""
        keys = [meta_key(room), history_key(room)]
        if idempotency is not None:
            keys.append(idempotency_key(room, *idempotency))
        result = await self._publish(
            keys=keys,
            args=[
                channel,
                frame[0],
                frame[1],
                size,
                ttl,
                int(time.time() * 1000),
                self._idempotency_ttl,
                new_epoch(),
                max(ttl * 2, META_TTL_FLOOR),
                message_id,
            ],
        )
        if result[0] == b"repeat":
            offset, first_id = result[1].decode().split(" ", 1)
            return Published(int(offset), first_id, None, repeat=True)
        return Published(int(result[1]), message_id, result[2].decode(), repeat=False)

    async def publish_plain(
        self,
        channel: str,
        frame: bytes,
        *,
        message_id: str,
        room: str,
        idempotency: tuple[str, str] | None = None,
    ) -> Published:
        """A message of a room without history: one PUBLISH, as ever; with an idempotency key,
        a script that publishes only the first time."""
        if idempotency is None:
            await self._redis.execute_command(self._publish_command, channel, frame)
            return Published(None, message_id, None, repeat=False)
        result = await self._publish_once(
            keys=[idempotency_key(room, *idempotency)],
            args=[channel, frame, self._idempotency_ttl, message_id],
        )
        if result[0] == b"repeat":
            return Published(None, result[1].decode().split(" ", 1)[1], None, repeat=True)
        return Published(None, message_id, None, repeat=False)

    async def tail(self, room: str, *, limit: int, ttl: int) -> Tail:
        """The room's epoch, last offset and newest `limit` messages still within `ttl`."""
        epoch, offset, entries = await self._tail(
            keys=[meta_key(room), history_key(room)],
            args=[new_epoch(), limit, META_TTL_FLOOR],
        )
        horizon = int(time.time() * 1000) - ttl * 1000
        stored = [_stored(entry) for entry in reversed(entries)]
        return Tail(epoch.decode(), int(offset), [s for s in stored if s.sent_ms >= horizon])

    async def position(self, room: str) -> tuple[str | None, int]:
        """The room's epoch (None before its first message) and last offset."""
        epoch, offset = await self._redis.hmget(meta_key(room), ["epoch", "offset"])
        return _epoch(cast(bytes | None, epoch)), int(offset or 0)

    async def before(
        self, room: str, *, before: int | None, limit: int, ttl: int
    ) -> tuple[str | None, list[Stored]]:
        """A page of history: the room's epoch (None before its first message) and up to
        `limit` messages before offset `before` (the newest ones when None), oldest first,
        still within `ttl`."""
        if before is not None and before <= 1:  # nothing comes before the first offset
            epoch = cast(bytes | None, await self._redis.hget(meta_key(room), "epoch"))
            return _epoch(epoch), []
        top = "+" if before is None else f"(0-{before}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(meta_key(room), "epoch")
            pipe.xrevrange(history_key(room), top, "-", count=limit)
            epoch, entries = await pipe.execute()
        horizon = int(time.time() * 1000) - ttl * 1000
        stored = [_stored(entry) for entry in reversed(entries)]
        return _epoch(epoch), [s for s in stored if s.sent_ms >= horizon]

    async def after(
        self, room: str, *, after: int, limit: int, ttl: int
    ) -> tuple[str | None, list[Stored]]:
        """A page of history forward: up to `limit` messages after offset `after`, oldest
        first, still within `ttl`."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(meta_key(room), "epoch")
            pipe.xrange(history_key(room), f"(0-{after}", "+", count=limit)
            epoch, entries = await pipe.execute()
        horizon = int(time.time() * 1000) - ttl * 1000
        stored = [_stored(entry) for entry in entries]
        return _epoch(epoch), [s for s in stored if s.sent_ms >= horizon]


def _epoch(value: bytes | None) -> str | None:
    return None if value is None else value.decode()

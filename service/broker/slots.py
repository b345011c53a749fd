"""Which node owns which hash slot: a Redis Cluster's map, read with `CLUSTER SLOTS`.

The cluster client keeps a map of its own for commands; subscriber connections need one they
can refresh the moment a link fails or Redis ends a subscription (a failover, a migrated
slot), asking the node that knows first.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisError

Address = tuple[str, int]
SPREAD = random.Random()  # noqa: S311 - spreading; not the global generator


class NoSlotMap(Exception):
    """No node of the cluster answered with a usable map."""


@dataclass(frozen=True)
class SlotMap:
    starts: tuple[int, ...]  # sorted first slots of the ranges
    ends: tuple[int, ...]
    owners: tuple[Address, ...]  # the primary serving each range
    nodes: frozenset[Address]  # every node named, primaries and replicas

    def owner(self, channel: str) -> Address | None:
        """The primary serving `channel`'s slot; None while no node covers it."""
        slot = key_slot(channel.encode())
        at = bisect.bisect_right(self.starts, slot) - 1
        if at >= 0 and slot <= self.ends[at]:
            return self.owners[at]
        return None


def parse_slots(reply: object) -> SlotMap:
    """`CLUSTER SLOTS` as Redis sends it: [[start, end, [host, port, id, …], replicas…], …]."""
    if not isinstance(reply, list):
        raise NoSlotMap(f"unexpected CLUSTER SLOTS reply: {type(reply).__name__}")
    ranges: list[tuple[int, int, Address]] = []
    nodes: set[Address] = set()
    for entry in reply:
        start, end, *served = entry
        addresses = [(_text(node[0]), int(node[1])) for node in served]
        if not addresses:
            continue
        ranges.append((int(start), int(end), addresses[0]))
        nodes.update(addresses)
    ranges.sort()
    return SlotMap(
        starts=tuple(r[0] for r in ranges),
        ends=tuple(r[1] for r in ranges),
        owners=tuple(r[2] for r in ranges),
        nodes=frozenset(nodes),
    )


async def read_slots(
    prefer: Iterable[Address], known: Iterable[Address], password: str | None = None
) -> SlotMap:
    """The map from the first node that answers: those in `prefer` first, in order, then the
    rest of `known` in random order."""
    first = list(dict.fromkeys(prefer))
    rest = [node for node in set(known) if node not in first]
    SPREAD.shuffle(rest)
    failures: list[str] = []
    for host, port in [*first, *rest]:
        client = aioredis.Redis(
            host=host,
            port=port,
            password=password,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),  # the next node, not this one again
        )
        try:
            slot_map = parse_slots(await client.execute_command("CLUSTER SLOTS"))  # type: ignore[no-untyped-call]
            if slot_map.owners:
                return slot_map
            failures.append(f"{host}:{port}: no slots")
        except (RedisError, OSError, NoSlotMap) as exc:
            failures.append(f"{host}:{port}: {type(exc).__name__}: {exc}")
        finally:
            await client.aclose()
    raise NoSlotMap("; ".join(failures) or "no node known")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

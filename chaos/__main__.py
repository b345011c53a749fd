"""`make chaos`: Redis (AOF), the auth service and three chat instances as real processes;
readers in every room checking offsets, publishers at a steady rate; and meanwhile a chat
instance SIGKILLed (and restarted) every quarter of the run, every subscriber link cut with
`CLIENT KILL TYPE pubsub`, one Redis restart, and 1 % of readers that stop reading until the
server closes them with 1013. Every dropped client reconnects to a random instance (readers
join with `since`). Then the faults stop, the publishers finish, the readers catch up, and
one verdict line says what arrived.

With `--cluster` (`make chaos CLUSTER=1`) Redis is a local Redis Cluster of 3 primaries and 3
replicas, and the Redis restart becomes a primary SIGKILLed (restarted as a replica once its
replica took over); the subscriber links are cut on every node.

    python -m chaos [--duration 60] [--readers 200] [--rooms 20] [--rate 160] [--cluster]

Exit status 0 when nothing retained was lost, duplicated or out of order, every loss beyond
history was announced with its exact range, and every planned fault happened; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from chaos.clients import Publisher, Reader
from chaos.stack import ChaosStack
from chaos.verdict import final_offsets, judge

PASSWORD = "chaos run password 4f1b"
USERS = 20
PUBLISHERS = 10
SHORT_ROOMS = 5  # rooms in the `short:` namespace (history of 40)
SETTLE_TIMEOUT = 30.0
PROGRESS_EVERY = 5.0


@dataclass
class Faults:
    kills: int = 0
    pubsub_kills: int = 0
    links_cut: int = 0
    redis_restarts: int = 0  # on a cluster: primaries SIGKILLed
    cluster: bool = False
    planned: Counter[str] = field(default_factory=Counter)

    def line(self, readers: list[Reader]) -> str:
        redis = "primary_kills" if self.cluster else "redis_restarts"
        return (
            f"faults: chat_kills={self.kills} pubsub_kills={self.pubsub_kills} "
            f"(links={self.links_cut}) {redis}={self.redis_restarts} "
            f"stalled_readers_closed={stalls_closed(readers)} "
            f"reconnects={sum(r.reconnects for r in readers)}"
        )


def stalls_closed(readers: list[Reader]) -> str:
    times = sorted(r.dropped_after for r in readers if r.dropped_after is not None)
    stalled = sum(1 for r in readers if r.stalls)
    after = f" (after {times[0]:.1f}-{times[-1]:.1f} s)" if times else ""
    return f"{len(times)}/{stalled}{after}"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=20, help=f"{SHORT_ROOMS} of them short")
    parser.add_argument("--rate", type=float, default=160.0, help="messages a second, in all")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--text-size", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="logs and Redis files")
    parser.add_argument(
        "--cluster", action="store_true", help="on a local Redis Cluster; a primary is killed"
    )
    args = parser.parse_args(argv)
    if (
        args.duration < 8
        or args.readers < 2
        or args.rooms <= SHORT_ROOMS
        or args.rate <= 0
        or args.instances < 2
    ):
        parser.error(
            f"at least --duration 8, --readers 2, --rooms {SHORT_ROOMS + 1}, --rate > 0, "
            "--instances 2"
        )
    return args


async def _tokens(auth_url: str, count: int) -> list[str]:
    tokens = []
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        for n in range(count):
            name = f"chaos{n:02}"
            await session.post(f"{auth_url}/users", json={"username": name, "password": PASSWORD})
            form = {"grant_type": "password", "username": name, "password": PASSWORD}
            async with session.post(f"{auth_url}/token", data=form) as response:
                tokens.append((await response.json())["access_token"])
    return tokens


async def _faults(stack: ChaosStack, duration: float, faults: Faults, log: list[str]) -> None:
    """The schedule: kills at every quarter (of every instance but the last, where readers
    stall), the pubsub kill at 0.3, the Redis restart (a cluster's primary killed) at 0.55."""
    events: list[tuple[float, str]] = [(duration * k / 4, "kill") for k in range(1, 4)]
    events += [(duration * 0.3, "pubsub"), (duration * 0.55, "redis")]
    faults.planned.update(kind for _, kind in events)
    started = time.monotonic()
    for at, kind in sorted(events):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        if kind == "kill":
            index = faults.kills % (len(stack.chats) - 1)  # the last one hosts the stalls
            await stack.kill_chat(index)
            faults.kills += 1
        elif kind == "pubsub":
            faults.links_cut += await stack.kill_pubsub()
            faults.pubsub_kills += 1
        elif stack.cluster is not None:
            kind = f"primary :{await stack.kill_primary()} killed"
            faults.redis_restarts += 1
        else:
            await stack.restart_redis()
            faults.redis_restarts += 1
        log.append(f"{time.monotonic() - started:5.1f}s {kind}")
    await asyncio.sleep(max(0.0, started + duration - time.monotonic()))  # the quiet last part


async def _run(args: argparse.Namespace, workdir: Path) -> int:
    rng = random.Random(args.seed)
    random.seed(rng.random())
    stack = ChaosStack(workdir, args.instances, cluster=args.cluster)
    print(f"chaos: starting the stack (logs in {workdir})", file=sys.stderr)
    try:
        await stack.start()
        return await _exercise(args, stack)
    finally:
        stack.stop()


async def _exercise(args: argparse.Namespace, stack: ChaosStack) -> int:
    tokens = await _tokens(stack.auth_url, USERS)
    rooms = [f"room-{n:02}" for n in range(args.rooms - SHORT_ROOMS)]
    short = [f"short:{n:02}" for n in range(SHORT_ROOMS)]
    rooms += short
    started = time.monotonic()
    stalled = {n for n in range(args.readers) if n % 200 in (0, len(rooms) - 1)}  # 1 %
    readers = [
        Reader(
            f"r{n}",
            tokens[n % USERS],
            rooms[n % len(rooms)],
            stack.urls,
            # On the one instance never killed, so that no kill ends the stall early.
            stall=(started + args.duration * 0.05, args.duration * 0.85, stack.urls[-1])
            if n in stalled
            else None,
        )
        for n in range(args.readers)
    ]
    publishers = [
        Publisher(
            f"p{n}",
            tokens[n % USERS],
            rooms[n::PUBLISHERS],
            stack.urls,
            rate=args.rate / PUBLISHERS,
            text_size=args.text_size,
        )
        for n in range(PUBLISHERS)
    ]
    changed = asyncio.Event()
    for reader in readers:
        reader.changed = changed
    stop_readers, stop_publishers = asyncio.Event(), asyncio.Event()
    reading = [asyncio.create_task(reader.run(stop_readers)) for reader in readers]
    await _until(lambda: all(r.start is not None for r in readers), changed, SETTLE_TIMEOUT)
    publishing = [asyncio.create_task(p.run(stop_publishers)) for p in publishers]
    faults, log = Faults(cluster=stack.cluster is not None), list[str]()
    progress = asyncio.create_task(_progress(readers, publishers, faults))
    try:
        await _faults(stack, args.duration, faults, log)
        stop_publishers.set()
        await asyncio.wait_for(asyncio.gather(*publishing), SETTLE_TIMEOUT)
        finals = final_offsets(publishers)
        await _until(
            lambda: all(r.caught_up(finals.get(r.room, 0)) for r in readers),
            changed,
            SETTLE_TIMEOUT,
        )
    finally:
        stop_readers.set()
        for task in (*reading, *publishing, progress):
            task.cancel()
        await asyncio.gather(*reading, *publishing, progress, return_exceptions=True)
    verdict = judge(readers, publishers, set(short))
    happened = (
        faults.kills == faults.planned["kill"]
        and faults.pubsub_kills == faults.planned["pubsub"]
        and faults.redis_restarts == faults.planned["redis"]
        and all(r.dropped_after is not None for r in readers if r.stalls)
    )
    ok = verdict.clean and not verdict.behind and happened
    print(f"chaos: fault schedule: {', '.join(log)}", file=sys.stderr)
    print(
        f"chaos verdict: {verdict.line()} behind={verdict.behind} | {faults.line(readers)} | "
        f"{'PASS' if ok else 'FAIL'}" + ("" if happened else " (a planned fault did not happen)")
    )
    return 0 if ok else 1


async def _until(condition: Callable[[], bool], changed: asyncio.Event, limit: float) -> None:
    """Waits until `condition()` holds (checked whenever a reader records something), or
    `limit` seconds; the verdict then says who fell behind."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            while not condition():
                changed.clear()
                await changed.wait()


async def _progress(readers: list[Reader], publishers: list[Publisher], faults: Faults) -> None:
    started = time.monotonic()
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        sent = sum(len(p.acked) for p in publishers)
        delivered = sum(len(r.received) for r in readers)
        print(
            f"chaos: {time.monotonic() - started:4.0f}s sent={sent} delivered={delivered} "
            f"{faults.line(readers)}",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        status = asyncio.run(_run(args, args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
            status = asyncio.run(_run(args, Path(workdir)))
    raise SystemExit(status)


if __name__ == "__main__":
    main()

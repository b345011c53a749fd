"""A local Redis Cluster for the test suite: 3 primaries and 3 replicas on free ports, made
with `redis-cli --cluster create`, which fault tests may kill a primary of.

Settings from what was learnt on this machine (issue 13): a 2 s node timeout, a cluster that
keeps serving the slots it still covers while a shard fails over
(`cluster-require-full-coverage no`), replicas that sync at once, and, before any failover
test, every replica's link to its primary up (an unsynced replica cannot be promoted).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

NODES = 6  # 3 primaries, each with one replica
BUS_OFFSET = 10_000  # a node's cluster bus listens 10,000 ports above it


def bindable(port: int) -> bool:
    """Nothing holds 127.0.0.1:`port` (a health answer there would be a new process's).

    With SO_REUSEADDR, as aiohttp and redis-server bind: connections of a process that just
    stopped, lingering in TIME_WAIT, do not hold the port; a listener does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free and exists as well."""
    while True:
        port = random.randint(20_000, 65_535 - BUS_OFFSET)
        if bindable(port) and bindable(port + BUS_OFFSET):
            return port


@dataclass
class Node:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=self.password, socket_timeout=2, decode_responses=True
        )


@dataclass
class LocalCluster:
    """The cluster's nodes; `seeds` is what `REDIS_CLUSTER_NODES` takes."""

    nodes: list[Node] = field(default_factory=list)
    # Where the nodes keep their files and logs (`<root>/<n>/`); a temporary directory,
    # removed by `stop`, when None.
    root: Path | None = None
    # `requirepass` (and `masterauth`) of every node; what REDIS_PASSWORD takes.
    password: str | None = None
    _temporary: bool = False

    @property
    def seeds(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])

    def start(self, timeout: float = 30.0) -> None:
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed (apt-get redis-server)")
        if self.root is None:
            self.root, self._temporary = Path(tempfile.mkdtemp(prefix="redis-cluster-")), True
        root = self.root
        for n in range(NODES):
            directory = root / str(n)
            directory.mkdir(parents=True)
            self.nodes.append(Node(cluster_port(), directory, password=self.password))
        try:
            self._create(server, cli, timeout)
        except BaseException:
            self.stop()  # no node left running after a failed start
            raise

    def _create(self, server: str, cli: str, timeout: float) -> None:
        for node in self.nodes:
            self._spawn(server, node)
        for node in self.nodes:
            _wait(lambda node=node: node.client().ping(), timeout, f"node {node.port} to start")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(  # noqa: S603 - redis-cli, found on PATH
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            # redis-cli reads the password from here, not from its (visible) arguments.
            env={**os.environ, **({"REDISCLI_AUTH": self.password} if self.password else {})},
        )
        _wait(self._settled, timeout, "the cluster to settle")

    def _spawn(self, server: str, node: Node) -> None:
        config = node.directory / "auth.conf"  # a password kept out of `ps`
        config.write_text(
            f"requirepass {node.password}\nmasterauth {node.password}\n" if node.password else ""
        )
        # fmt: off
        argv = [
            server,
            str(config),
            "--port", str(node.port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000",
            "--cluster-require-full-coverage", "no",
            "--repl-diskless-sync-delay", "0",
            "--save", "",
            "--appendonly", "yes",
            "--dir", str(node.directory),
            "--logfile", str(node.directory / "redis.log"),
        ]
        # fmt: on
        node.process = subprocess.Popen(  # noqa: S603 - redis-server, found on PATH
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _settled(self) -> bool:
        for node in self.nodes:
            # parsed into a dict
            info = node.client().execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
            if info.get("cluster_state") != "ok":
                return False
            replication = node.client().info("replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    def primary_of(self, key: str) -> Node:
        """The node that serves `key`'s slot now."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            client = node.client()
            if client.info("replication").get("role") != "master":
                continue
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))  # type: ignore[no-untyped-call]
            for start, end, *_ in client.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
                if start <= slot <= end and _serves(node, client, start):
                    return node
        raise RuntimeError(f"no live primary serves {key!r}")

    def restart(self, node: Node) -> None:
        """Starts a killed node again on its port and files: it rejoins the cluster (as a
        replica, once its replica took over)."""
        server = shutil.which("redis-server")
        assert server is not None
        self._spawn(server, node)
        _wait(lambda: node.client().ping(), 30.0, f"node {node.port} to restart")

    def primaries(self) -> list[Node]:
        """The live nodes that serve slots now."""
        return [
            node
            for node in self.nodes
            if node.process is not None
            and node.process.poll() is None
            and node.client().info("replication").get("role") == "master"
        ]

    def wait_covered(self, timeout: float = 30.0) -> None:
        """Returns once the live nodes report every slot served (after a failover)."""

        def covered() -> bool:
            for node in self.nodes:
                if node.process is None or node.process.poll() is not None:
                    continue
                info = node.client().execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
                if info.get("cluster_slots_ok") != "16384":
                    return False
            return True

        _wait(covered, timeout, "every slot to be served again")

    def wait_replicated(self, primary: Node, timeout: float = 10.0) -> None:
        """Returns once every replica of `primary` has all it wrote: Redis replicates
        asynchronously, so a primary killed sooner takes its last writes with it (what a
        test of "nothing wrong after a failover" must rule out before it kills)."""

        def caught_up() -> bool:
            info = primary.client().info("replication")
            offset = int(info["master_repl_offset"])
            replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
            return bool(replicas) and all(int(r["offset"]) >= offset for r in replicas)

        _wait(caught_up, timeout, f"the replicas of {primary.port} to catch up")

    def kill(self, node: Node) -> None:
        """SIGKILLs a node (its replica takes over after the node timeout, about 2-4 s)."""
        assert node.process is not None
        node.process.kill()
        node.process.wait(timeout=10)

    def flush(self) -> None:
        for node in self.nodes:
            client = node.client()
            if client.info("replication").get("role") == "master":
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
                node.process.wait(timeout=10)
        if self._temporary and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _serves(node: Node, client: redis.Redis, slot: int) -> bool:
    """Whether `node` itself is the primary of the slot range starting at `slot`."""
    for start, _end, primary, *_ in client.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
        if start == slot:
            return int(primary[1]) == node.port
    return False


def _wait(ready: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():  # type: ignore[operator]
                return
        except (redis.ConnectionError, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling processes we just spawned; no event to wait on

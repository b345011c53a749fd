"""`make run`: the whole stack on this machine, stopped together with Ctrl-C.

Starts a private redis-server (unless REDIS_URL is set; with CLUSTER=1 a local Redis Cluster
of 3 primaries and 3 replicas instead), the auth service and the chat instances, waits until
each answers /healthz, prints where they are and how to try them, and on Ctrl-C stops
everything it started, by pid. A chat instance that exits (killed, say, to watch the clients
move to the other one) is reported and the rest go on; the run ends when Redis or the auth
service exits, or when no chat instance is left. A cluster's nodes are not watched: kill a
primary by hand to watch its replica take over.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages are importable

from chaos.local_cluster import LocalCluster, bindable  # noqa: E402 - after the path is set
from service.broker.cluster import room_channel  # noqa: E402

RUN_DIR = ROOT / ".run"
AUTH_PORT = 8081
CHAT_PORTS = (8080, 8082)
DEV_CHAT_CLIENT = ("chat", "dev-chat-secret")


@dataclass
class Stack:
    """The processes this run started, in start order."""

    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    # Reported when they exit, never stopping the run: a cluster's nodes (a killed primary's
    # replica takes over).
    watched: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (RUN_DIR / f"{name}.log").open("ab")
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append((name, process))
        print(f"  started {name} (pid {process.pid}, log .run/{name}.log)")

    def stop(self) -> None:
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"  {name} did not stop in 10 s; killing it")
                process.kill()
                process.wait()
        print("stopped everything this run started")

    def dead(self) -> str | None:
        for name, process in self.processes:
            if process.poll() is not None:
                return name
        return None

    def supervise(self) -> str:
        """Waits until the stack cannot go on, reporting each chat instance that exits;
        returns why the run ends."""
        reported: set[str] = set()
        while True:
            for name, process in self.processes + self.watched:
                code = process.poll()
                if code is None or name in reported:
                    continue
                reported.add(name)
                how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                if (name, process) in self.watched:
                    print(f"{name} exited ({how}); the cluster fails over to its replica")
                    continue
                if not name.startswith("chat"):
                    return f"{name} exited ({how}); see .run/{name}.log"
                left = [n for n, p in self.processes if n.startswith("chat") and p.poll() is None]
                if not left:
                    return f"{name} exited ({how}) and no chat instance is left"
                print(f"{name} exited ({how}; see .run/{name}.log); {', '.join(left)} go on")
            time.sleep(0.5)  # supervising children: there is no event to wait on


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(stack: Stack, name: str, url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.dead() is not None:
            raise RuntimeError(
                f"{stack.dead()} exited during start-up; see .run/{stack.dead()}.log"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own URL)
                if response.status == 200 and stack.dead() is None:  # our child's answer
                    return
        except OSError:
            pass
        time.sleep(0.1)  # polling a child we just started: there is no event to wait on
    raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f} s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGINT and SIGTERM both stop the stack, by pid


def main() -> int:
    RUN_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    # Secrets are left unset on purpose: the services then use their development defaults
    # and say so loudly in their logs, which is the truth about this stack.
    env.setdefault("AUTH_URL", f"http://127.0.0.1:{AUTH_PORT}")
    stack = Stack()
    cluster: LocalCluster | None = None
    busy = [port for port in (AUTH_PORT, *CHAT_PORTS) if not bindable(port)]
    if busy:
        for port in busy:
            print(f"port {port} is already in use (another `make run`?): stop that, or free it")
        return 1
    # Both explicitly: a job started in the background inherits SIGINT as ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    # Every instance's page may open every instance's /ws (a reconnect moves to another),
    # and each instance's web client signs in with the auth service from the browser.
    origins = ",".join(
        f"http://{host}:{port}" for port in CHAT_PORTS for host in ("127.0.0.1", "localhost")
    )
    env.setdefault("CHAT_ALLOWED_ORIGINS", origins)
    env.setdefault("AUTH_ALLOWED_ORIGINS", origins)
    # A web client whose instance is killed moves its socket to the other one.
    env.setdefault(
        "CHAT_WEB_SOCKET_URLS", ",".join(f"ws://127.0.0.1:{port}/ws" for port in CHAT_PORTS)
    )
    try:
        print("starting the stack")
        if os.environ.get("CLUSTER") == "1":
            cluster = start_cluster()
            for node in cluster.nodes:
                assert node.process is not None
                stack.watched.append((f"redis node :{node.port}", node.process))
            env["REDIS_CLUSTER_NODES"] = cluster.seeds
            env["REDIS_URL"] = f"redis://127.0.0.1:{cluster.nodes[0].port}/0"  # unused
        elif "REDIS_URL" not in os.environ:
            redis_server = shutil.which("redis-server")
            if redis_server is None:
                print("redis-server is not on PATH: apt-get install redis-server, or set REDIS_URL")
                return 1
            port = free_port()
            stack.start(
                "redis",
                [
                    redis_server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(RUN_DIR),
                ],
                env,
            )
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        stack.start(
            "auth", [sys.executable, "-m", "auth_service"], {**env, "AUTH_PORT": str(AUTH_PORT)}
        )
        wait_healthy(stack, "auth", f"http://127.0.0.1:{AUTH_PORT}/healthz")
        chat_urls = []
        if (ROOT / "service" / "__main__.py").exists():
            for index, chat_port in enumerate(CHAT_PORTS):
                name = f"chat{index + 1}"
                stack.start(
                    name, [sys.executable, "-m", "service"], {**env, "CHAT_PORT": str(chat_port)}
                )
                wait_healthy(stack, name, f"http://127.0.0.1:{chat_port}/healthz")
                chat_urls.append(f"ws://127.0.0.1:{chat_port}/ws")
        redis_lines = cluster_lines(cluster) if cluster else [env["REDIS_URL"]]
        print_banner(redis_lines, chat_urls, web_urls(chat_urls))
        redis_env = (
            f"REDIS_CLUSTER_NODES={env['REDIS_CLUSTER_NODES']}"
            if cluster
            else f"REDIS_URL={env['REDIS_URL']}"
        )
        print(f"admin commands reach this stack's Redis with {redis_env}, for example:")
        print(f"  {redis_env} .venv/bin/auth-service users disable alice\n", flush=True)
        print(stack.supervise())
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:
        print(f"start-up failed: {error}")
        return 1
    finally:
        stack.stop()
        if cluster is not None:
            cluster.stop()
            print("stopped the local cluster")


def start_cluster() -> LocalCluster:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise RuntimeError(
            "redis-server and redis-cli are not on PATH: apt-get install redis-server"
        )
    root = RUN_DIR / "cluster"
    shutil.rmtree(root, ignore_errors=True)  # a fresh cluster each run
    print(f"  starting a local Redis Cluster (3 primaries, 3 replicas; files and logs in {root})")
    cluster = LocalCluster(root=root)
    cluster.start()
    return cluster


def cluster_lines(cluster: LocalCluster) -> list[str]:
    """One line per node: its address, role, pid (to kill a primary by hand), and which one
    serves the example room."""
    lobby = cluster.primary_of(room_channel("lobby"))
    lines = []
    for node in cluster.nodes:
        assert node.process is not None
        role = node.client().info("replication")["role"]
        role = "primary" if role == "master" else "replica"
        log = node.directory.relative_to(ROOT) / "redis.log"
        serves = ", serves #lobby" if node is lobby else ""
        lines.append(
            f"redis://127.0.0.1:{node.port} {role} (pid {node.process.pid}, log {log}{serves})"
        )
    return lines


def web_urls(chat_urls: list[str]) -> list[str]:
    """The web client of each chat instance (`ws://host:port/ws` -> `http://host:port/`)."""
    return [url.replace("ws://", "http://", 1).removesuffix("ws") for url in chat_urls]


def print_banner(redis: list[str], chat_urls: list[str], web: Sequence[str] = ()) -> None:
    auth = f"http://127.0.0.1:{AUTH_PORT}"
    client_id, secret = DEV_CHAT_CLIENT
    print("\nthe stack is up (Ctrl-C stops it)")
    for line in redis:
        print(f"  redis  {line}")
    if len(redis) > 1:
        print("         (kill -9 a primary's pid to watch a failover: its replica takes over)")
    print(f"  auth   {auth}")
    for url in chat_urls:
        print(f"  chat   {url}")
    for url in web:
        print(f"  web    {url}  (the web client: open it in a browser, register, chat)")
    print(f"""
try it (in another shell, from this directory):
  # create two users
  for u in alice bob; do curl -s -X POST {auth}/users -H 'Content-Type: application/json' \\
       -d "{{\\"username\\":\\"$u\\",\\"password\\":\\"correct horse battery\\"}}"; echo; done
  # get a token (password grant)
  curl -s -X POST {auth}/token -d grant_type=password -d username=alice \\
       -d 'password=correct horse battery'
  # introspect it as the chat service does, revoke it
  curl -s -X POST {auth}/introspect -u {client_id}:{secret} -d token=ACCESS_TOKEN
  curl -s -X POST {auth}/revoke -d token=ACCESS_TOKEN""")
    if len(chat_urls) >= 2:
        print(
            "  # chat: alice on one instance, bob on the other (type lines, Ctrl-D to leave);\n"
            "  # each moves to the next --url if its instance goes away (try: kill one)"
        )
        for first, user in zip(range(len(chat_urls)), ("alice", "bob"), strict=False):
            urls = chat_urls[first:] + chat_urls[:first]
            print(
                "  CHAT_PASSWORD='correct horse battery' .venv/bin/chat-client \\\n"
                f"       --url {' --url '.join(urls)} --room lobby --username {user}"
            )
    print()


if __name__ == "__main__":
    sys.exit(main())

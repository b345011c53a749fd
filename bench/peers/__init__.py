"""The systems `make bench` compares ours with, each speaking the protocol of bench/README.md.

`reference` is bare aiohttp on Redis pub/sub (the ceiling this machine shows), `socketio_server`
is python-socketio with its Redis manager, `node_socketio/server.mjs` is Node.js Socket.IO 4
with `@socket.io/redis-adapter`, `channels_app` is Django Channels on the channels_redis pub/sub
layer. Each reads `PORT` and `REDIS_URL` from its environment; `smoke` checks them all end to
end.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NODE_SOCKETIO = Path(__file__).resolve().parent / "node_socketio"
SOCKET_IO_PATH = "/socket.io/?EIO=4&transport=websocket"


def python_peer(module: str) -> Callable[[], list[str]]:
    return lambda: [sys.executable, "-m", module]


def node_peer() -> list[str]:
    """`node server.mjs`, once its packages are installed (`make bench` runs npm ci)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the node-socketio peer needs Node.js 20+ (node) on PATH")
    if not (NODE_SOCKETIO / "node_modules" / "socket.io").is_dir():
        raise RuntimeError(f"no node_modules in {NODE_SOCKETIO}: make bench runs npm ci there")
    return [node, str(NODE_SOCKETIO / "server.mjs")]


@dataclass(frozen=True)
class Peer:
    """How to start one process of a peer, the path its sockets open, and its wire format:
    "json" (the frames of bench/README.md) or "socketio" (Engine.IO 4 over one WebSocket)."""

    argv: Callable[[], list[str]]
    path: str
    protocol: str


PEERS: dict[str, Peer] = {
    "reference": Peer(python_peer("bench.peers.reference"), "/ws", "json"),
    "socketio": Peer(python_peer("bench.peers.socketio_server"), SOCKET_IO_PATH, "socketio"),
    "node-socketio": Peer(node_peer, SOCKET_IO_PATH, "socketio"),
    "channels": Peer(python_peer("bench.peers.channels_app.serve"), "/ws", "json"),
}

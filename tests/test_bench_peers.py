"""`make bench`'s Node.js Socket.IO peer: how it is registered, started and judged.

The end-to-end check runs the peer itself (two `node` processes on a private Redis, driven by
bench/peers/smoke.py) where `make bench` has installed its packages and the bench extras are
in the venv; elsewhere it is skipped, as `make test` installs neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import peers, run


def fanout(deliveries_per_s: float) -> dict[str, Any]:
    return {"fanout": {"deliveries_per_s": deliveries_per_s, "lost": 0, "duplicated": 0}}


def node_target(results: dict[str, dict[str, Any]]) -> list[tuple[str, bool, str]]:
    return [check for check in run.targets(results) if "Node Socket.IO" in check[0]]


def test_node_socketio_runs_by_default_on_the_socketio_wire_path() -> None:
    assert "node-socketio" in run.DEFAULT_SYSTEMS
    assert "node-socketio" in run.SYSTEMS
    node, python = peers.PEERS["node-socketio"], peers.PEERS["socketio"]
    assert (node.path, node.protocol) == (python.path, python.protocol)


def test_the_target_is_met_only_when_ours_is_ahead_of_node() -> None:
    ahead = {"reference": fanout(100), "ours": fanout(110), "node-socketio": fanout(100)}
    assert node_target(ahead) == [
        ("fan-out deliveries/s: ours ahead of Node Socket.IO", True, "1.1 x")
    ]
    level = {**ahead, "ours": fanout(100)}
    assert node_target(level) == [
        ("fan-out deliveries/s: ours ahead of Node Socket.IO", False, "1.0 x")
    ]
    assert node_target({"reference": fanout(100), "ours": fanout(110)}) == []


def test_the_node_peer_without_its_packages_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(peers, "NODE_SOCKETIO", tmp_path)
    with pytest.raises(RuntimeError, match="npm ci"):
        peers.PEERS["node-socketio"].argv()


@pytest.mark.skipif(
    not (peers.NODE_SOCKETIO / "node_modules" / "socket.io").is_dir(),
    reason="the Node peer's packages are installed by make bench (npm ci)",
)
async def test_the_node_peer_fans_out_across_its_two_processes(redis_url: str) -> None:
    pytest.importorskip("socketio", reason="the bench extras (make bench) drive the check")
    from bench.peers import smoke

    await smoke.check_peer(peers.PEERS["node-socketio"], redis_url)

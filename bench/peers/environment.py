"""The two settings every peer reads from its environment, with errors that name them."""

from __future__ import annotations

import os


def listen_port() -> int:
    """`PORT`: the TCP port to listen on at 127.0.0.1."""
    raw = _required("PORT")
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"PORT must be an integer, not {raw!r}") from None
    if not 0 < port < 65536:
        raise SystemExit(f"PORT must be between 1 and 65535, not {port}")
    return port


def redis_url() -> str:
    """`REDIS_URL`: the Redis every process of one peer shares."""
    return _required("REDIS_URL")


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"{name} is not set")
    return value

"""The python-socketio peer: `AsyncServer` on aiohttp with `AsyncRedisManager`, used as its
documentation shows and tuned no further than silencing its logs.

Events (bench/README.md): on connect the server emits `hello`; `join` {"room"} is acknowledged
with {"joined": room}; `send` {"room", "text", "ref"} emits `message` {"room", "id", "text",
"ts"} to the room through the Redis manager and is acknowledged with {"id": id}.

Run: `PORT=8102 REDIS_URL=redis://127.0.0.1:6379/0 python -m bench.peers.socketio_server`.
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

import socketio
from aiohttp import web

from bench.peers.environment import listen_port, redis_url


def create_app(url: str) -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(url),
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )
    app = web.Application()
    sio.attach(app)
    prefix = secrets.token_hex(4)
    ids = itertools.count(1)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await sio.emit("hello", {}, to=sid)

    @sio.event
    async def join(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room = data["room"]
        await sio.enter_room(sid, room)
        return {"joined": room}

    @sio.event
    async def send(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room = data["room"]
        message_id = f"{prefix}-{next(ids)}"
        message = {"room": room, "id": message_id, "text": data["text"], "ts": time.time()}
        await sio.emit("message", message, room=room)
        return {"id": message_id}

    return app


def main() -> None:
    port = listen_port()
    web.run_app(create_app(redis_url()), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()

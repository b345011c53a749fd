"""`python -m bench.peers.channels_app.serve`: one Channels peer process under uvicorn.

Run: `PORT=8103 REDIS_URL=redis://127.0.0.1:6379/0 python -m bench.peers.channels_app.serve`.
"""

from __future__ import annotations

import os

import uvicorn

from bench.peers.environment import listen_port, redis_url


def main() -> None:
    port = listen_port()
    redis_url()  # fail here, naming the variable, rather than inside Django's settings import
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.channels_app.settings")
    uvicorn.run(
        "bench.peers.channels_app.asgi:application",
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        # What "auto" picks with websockets installed; "websockets" is the deprecated legacy one.
        ws="websockets-sansio",
        # The router serves WebSocket only; "auto" would probe lifespan and log that it failed.
        lifespan="off",
        # The stdlib loop, as every other system in the comparison runs on; "auto" would pick
        # uvloop (installed by uvicorn[standard]) and measure the loop rather than the stack.
        loop="asyncio",
    )


if __name__ == "__main__":
    main()

"""The ASGI application of the Channels peer: WebSocket `/ws` only."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.channels_app.settings")
# Before the imports below: Channels' consumer and routing modules expect a configured Django.
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.peers.channels_app.consumers import RoomConsumer  # noqa: E402

application = ProtocolTypeRouter({"websocket": URLRouter([path("ws", RoomConsumer.as_asgi())])})

"""The Django Channels peer: an `AsyncJsonWebsocketConsumer` per socket, rooms as groups of the
channels_redis `RedisPubSubChannelLayer`, served by uvicorn (`python -m
bench.peers.channels_app.serve`)."""

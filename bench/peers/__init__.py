"""The systems `make bench` compares ours with, each speaking the protocol of bench/README.md.

`reference` is bare aiohttp on Redis pub/sub (the ceiling this machine shows), `socketio_server`
is python-socketio with its Redis manager, `channels_app` is Django Channels on the
channels_redis pub/sub layer. Each runs as `python -m <module>` with `PORT` and `REDIS_URL` set;
`smoke` checks all three end to end.
"""

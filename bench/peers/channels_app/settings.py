"""Django settings for the Channels peer: no database, no HTTP views, one Redis channel layer."""

from __future__ import annotations

import os

from bench.peers.environment import redis_url

# A benchmark peer holds no sessions or signed data; the default only satisfies Django.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "bench-peer-throwaway-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [redis_url()]},
    }
}

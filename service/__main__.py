"""`python -m service` (or `chat-service`): run one chat instance."""

from __future__ import annotations

from aiohttp import web

from common.entrypoint import announce_serving, settings_or_exit
from common.logging import AccessLogger
from service.app import create_app
from service.settings import load_settings


def main() -> None:
    settings = settings_or_exit("chat-service", load_settings)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        print=announce_serving("chat-service", settings.host, settings.port),
        shutdown_timeout=settings.close_timeout + 3,
        backlog=settings.backlog,  # a reconnect storm arrives all at once
    )


if __name__ == "__main__":
    main()

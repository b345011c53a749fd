"""`python -m service` (or `chat-service`): run one chat instance."""

from __future__ import annotations

from common.entrypoint import settings_or_exit
from common.http_server import serve
from service.app import create_app
from service.settings import load_settings


def main() -> None:
    settings = settings_or_exit("chat-service", load_settings)
    serve(
        "chat-service",
        create_app(settings),
        settings.host,
        settings.port,
        settings.http,
        shutdown_timeout=settings.close_timeout + 3,
        backlog=settings.backlog,  # a reconnect storm arrives all at once
    )


if __name__ == "__main__":
    main()

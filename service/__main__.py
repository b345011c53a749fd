"""`python -m service` (or `chat-service`): run one chat instance."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from common.config import ConfigError
from common.logging import AccessLogger, configure_logging
from service.app import create_app
from service.settings import load_settings


def main() -> None:
    configure_logging()  # before settings, so a development-default warning is logged
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"chat-service: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.getLogger().setLevel(settings.log_level)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        print=None,
        shutdown_timeout=settings.close_timeout + 3,
    )


if __name__ == "__main__":
    main()

"""What both services do first when started: logging, then settings or one clear error."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web

from common.config import ConfigError
from common.logging import AccessLogger, configure_logging


class HasLogLevel(Protocol):
    @property
    def log_level(self) -> str: ...


S = TypeVar("S", bound=HasLogLevel)


def settings_or_exit(program: str, load: Callable[[], S]) -> S:
    """Loaded settings; on a configuration error, one line naming every bad variable on
    stderr and exit status 2."""
    configure_logging()  # before settings, so a development-default warning is logged
    try:
        settings = load()
    except ConfigError as error:
        print(f"{program}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.getLogger().setLevel(settings.log_level)
    return settings


def announce_serving(program: str, host: str, port: int) -> Callable[[str], None]:
    """For `web.run_app(print=...)`, which calls it once the sockets listen: one structured
    line instead of aiohttp's banner, so supervisors and tests can wait for readiness."""

    def announce(_banner: str) -> None:
        logging.getLogger(program).info("serving", extra={"url": f"http://{host}:{port}"})

    return announce


def serve(program: str, app: web.Application, host: str, port: int, **options: Any) -> None:
    """Runs `app` until SIGINT/SIGTERM: JSON access log, one `serving` line once listening."""
    web.run_app(
        app,
        host=host,
        port=port,
        access_log_class=AccessLogger,
        print=announce_serving(program, host, port),
        **options,
    )

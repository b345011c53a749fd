"""What both services do first when started: logging, then settings or one clear error."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Protocol, TypeVar

from common.config import ConfigError
from common.logging import configure_logging


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

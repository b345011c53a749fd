"""One log line per condition, not one per occurrence: what an attacker repeats at will must
not be able to fill the disk or drown the lines that matter."""

from __future__ import annotations

import logging
import time
from typing import Any


class ConditionLog:
    """Logs a recurring condition when it is first seen and then at most once per `interval`
    seconds, each line saying how often it happened since the previous one."""

    __slots__ = ("_interval", "_level", "_logger", "_message", "_next", "_unreported")

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        level: int = logging.WARNING,
        interval: float = 60.0,
    ) -> None:
        self._logger = logger
        self._message = message
        self._level = level
        self._interval = interval
        self._next = 0.0
        self._unreported = 0

    def hit(self, **extra: Any) -> None:
        self._unreported += 1
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval
        self._logger.log(
            self._level,
            self._message,
            extra={**extra, "occurrences": self._unreported, "per_seconds": self._interval},
        )
        self._unreported = 0

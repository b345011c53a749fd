"""Structured (JSON lines) logging that keeps credentials out of every record."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# Field names whose values are credentials; a record carrying one logs "[redacted]" instead.
SENSITIVE_FIELDS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "password",
        "secret",
        "client_secret",
        "cookie",
        "authorization",
        "session",
    }
)


# Credential shapes, wherever they appear in a line (a library's message or traceback quoting
# a request): JWTs, refresh tokens, and 43-character ids after "=" (session cookies).
CREDENTIAL_PATTERN = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
    r"|rt_[A-Za-z0-9_-]{43}"
    r"|(?<==)[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"
)


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object: time, level, logger, message and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _RESERVED or key.startswith("_"):
                continue
            entry[key] = "[redacted]" if key.lower() in SENSITIVE_FIELDS else value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return CREDENTIAL_PATTERN.sub("[redacted]", json.dumps(entry, default=str))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class AccessLogger(AbstractAccessLogger):
    """One structured line per request: method, path without query string, status, time.

    The query string and headers are left out on purpose: they are where credentials travel.
    """

    @property
    def enabled(self) -> bool:
        # Asked once per connection by aiohttp: below INFO it skips the timing and this call.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        self.logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "ms": round(elapsed * 1000, 1),
                "remote": request.remote,
            },
        )

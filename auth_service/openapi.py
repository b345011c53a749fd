"""The auth service's OpenAPI document, served at `GET /openapi.json`.

`docs/openapi.yaml` is the source; the package ships `auth_service/openapi.json`, generated
from it (see `common/openapi.py`). After editing the YAML:

    python -m auth_service.openapi      # rewrites auth_service/openapi.json

`tests/auth/test_openapi.py` fails while the two differ.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from common import openapi
from common.openapi import RESOURCE, render

__all__ = ["RESOURCE", "render", "routes"]

PACKAGE = "auth_service"
SOURCE = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


def routes() -> list[web.RouteDef]:
    return openapi.routes(PACKAGE)


if __name__ == "__main__":
    openapi.regenerate(SOURCE, Path(__file__).resolve().parent)

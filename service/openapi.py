"""The chat service's OpenAPI document (its HTTP API), served at `GET /openapi.json`.

`docs/chat-openapi.yaml` is the source; the package ships `service/openapi.json`, generated
from it (see `common/openapi.py`). After editing the YAML:

    python -m service.openapi      # rewrites service/openapi.json

`tests/chat/test_api_openapi.py` fails while the two differ.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from common import openapi

PACKAGE = "service"
SOURCE = Path(__file__).resolve().parent.parent / "docs" / "chat-openapi.yaml"


def routes() -> list[web.RouteDef]:
    return openapi.routes(PACKAGE)


if __name__ == "__main__":
    openapi.regenerate(SOURCE, Path(__file__).resolve().parent)

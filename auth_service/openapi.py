"""The service's OpenAPI document, served at `GET /openapi.json`.

`docs/openapi.yaml` is the source. The package ships `auth_service/openapi.json`, generated
from it, so serving the document needs no YAML parser at run time (pyyaml is a development
dependency only). After editing the YAML:

    python -m auth_service.openapi      # rewrites auth_service/openapi.json

`tests/auth/test_openapi.py` fails while the two differ.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

PACKAGE = "auth_service"
RESOURCE = "openapi.json"
SOURCE = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


def render(document: Any) -> str:
    """The text of the shipped JSON copy: stable, so regenerating it is reproducible."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load() -> bytes:
    """The shipped document, compacted; parsing it here makes a damaged copy stop start-up."""
    text = resources.files(PACKAGE).joinpath(RESOURCE).read_text(encoding="utf-8")
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":")).encode()


def routes() -> list[web.RouteDef]:
    """The `/openapi.json` route; the document is read once, when the app is built."""
    document = load()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json", charset="utf-8")

    return [web.get("/openapi.json", openapi)]


def main() -> None:
    import yaml  # only regenerating the copy needs it, and only from a source checkout

    document = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    target = Path(__file__).with_name(RESOURCE)
    target.write_text(render(document), encoding="utf-8")
    print(f"wrote {target} from {SOURCE}", file=sys.stderr)


if __name__ == "__main__":
    main()

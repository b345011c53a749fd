"""Serving a service's OpenAPI document (`GET /openapi.json`) and regenerating it.

Each service keeps a YAML source under `docs/` and ships a JSON copy generated from it, so
serving the document needs no YAML parser at run time (pyyaml is a development dependency
only). Each service's `openapi` module names its files and regenerates its copy when run.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

RESOURCE = "openapi.json"


def render(document: Any) -> str:
    """The text of a shipped JSON copy: stable, so regenerating it is reproducible."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load(package: str) -> bytes:
    """A package's shipped document, compacted; parsing it here makes a damaged copy stop
    start-up."""
    text = resources.files(package).joinpath(RESOURCE).read_text(encoding="utf-8")
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":")).encode()


def routes(package: str) -> list[web.RouteDef]:
    """The `/openapi.json` route; the document is read once, when the app is built."""
    document = load(package)

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json", charset="utf-8")

    return [web.get("/openapi.json", openapi)]


def regenerate(source: Path, package_dir: Path) -> None:
    import yaml  # only regenerating the copy needs it, and only from a source checkout

    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    target = package_dir / RESOURCE
    target.write_text(render(document), encoding="utf-8")
    print(f"wrote {target} from {source}", file=sys.stderr)

"""Serving the web client: `GET /` (the page), `GET /static/…` (its files, read once at start
into memory, so no request can name a path outside them) and `GET /web/config.json` (where
the page finds the auth service), each with the security headers a page needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from service.settings import ChatSettings

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The Host a browser sent, when it can be written into the policy as it is.
HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class Asset:
    """One file of the client: its bytes and its media type."""

    body: bytes
    content_type: str

    def response(self, headers: dict[str, str]) -> web.Response:
        charset = "utf-8" if self.content_type.startswith("text/") else None
        return web.Response(
            body=self.body, content_type=self.content_type, charset=charset, headers=headers
        )


def load_assets(root: Path = STATIC) -> dict[str, Asset]:
    """Every file under `root` by its path relative to it (`js/main.js`)."""
    assets = {}
    for path in sorted(root.rglob("*")):
        kind = TYPES.get(path.suffix)
        if path.is_file() and kind is not None:
            assets[path.relative_to(root).as_posix()] = Asset(path.read_bytes(), kind)
    return assets


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(
    auth_origin: str, host: str | None, other_sockets: tuple[str, ...] = ()
) -> str:
    """Scripts and styles from this instance only (none inline), and connections to this
    instance (HTTP and WebSocket), to the auth service and to the other instances' sockets
    the page may move to, nothing else."""
    connect = ["'self'", auth_origin, *dict.fromkeys(map(origin_of, other_sockets))]
    if host is not None and HOST.fullmatch(host):
        # CSP 3 counts ws: to one's own host as 'self'; older browsers need it spelt out.
        connect += [f"ws://{host}", f"wss://{host}"]
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'none'",  # forms are the script's; without it they submit nothing
            "frame-ancestors 'none'",
        )
    )


COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Small files that change with each release: revalidated, never stale.
    "Cache-Control": "no-cache",
}


def routes(settings: ChatSettings) -> list[web.RouteDef]:
    """The web client's routes for an instance configured with `settings`."""
    assets = load_assets()
    auth_origin = origin_of(settings.public_auth_url)
    config = {
        "auth_url": settings.public_auth_url,
        "max_text": settings.max_text,
        # After this instance's own /ws: where to reconnect while it is down.
        "ws_urls": list(settings.web_socket_urls),
    }

    async def index(request: web.Request) -> web.Response:
        policy = content_security_policy(auth_origin, request.host, settings.web_socket_urls)
        return assets["index.html"].response({**COMMON_HEADERS, "Content-Security-Policy": policy})

    async def static(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        return asset.response(COMMON_HEADERS)

    async def client_config(request: web.Request) -> web.Response:
        return web.json_response(config, headers=COMMON_HEADERS)

    return [
        web.get("/", index),
        web.get("/static/{name:.+}", static),
        web.get("/web/config.json", client_config),
    ]

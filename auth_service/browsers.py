"""Pages that call the auth service from a browser: CORS with credentials for the origins of
`AUTH_ALLOWED_ORIGINS` only, and no state-changing request from any other page.

A browser names the page behind every cross-origin request, and behind every POST, in the
`Origin` header, and no page can forge it. So a request that carries one is from a page:

- a listed origin gets the CORS headers (`Access-Control-Allow-Origin` echoing it exactly,
  `Access-Control-Allow-Credentials: true`), on its preflight and on the answer itself, so
  its page may read the answer (and send the session cookie, for `/login` and `/me`);
- any other origin gets no CORS header, so its page can read nothing, and a POST from it
  (the state-changing requests: `/users`, `/token`, `/login`, `/logout`, `/revoke`, `/me/…`)
  is refused with 403 `forbidden_origin` before its body is read — cross-site request
  forgery of a registration, a login or a revocation stops here, whatever the body's type.

Requests without `Origin` (curl, the chat service, the terminal client) are not browsers'
and pass as before. Every answer says `Vary: Origin`, since its CORS headers depend on it.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from auth_service.errors import OAuthError, error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW_METHODS = "GET, POST"
ALLOW_HEADERS = "Authorization, Content-Type"
# An error's Retry-After (429, 503) and challenge (401) are worth showing to a person.
EXPOSE_HEADERS = "Retry-After, WWW-Authenticate"
PREFLIGHT_MAX_AGE = "600"


def forbidden_origin() -> OAuthError:
    return OAuthError(
        "forbidden_origin",
        "pages of this origin may not call the auth service (see AUTH_ALLOWED_ORIGINS)",
        status=403,
    )


def _vary_origin(answer: web.StreamResponse | web.HTTPException) -> None:
    vary = answer.headers.get("Vary")
    if vary is None:
        answer.headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        answer.headers["Vary"] = f"{vary}, Origin"


def _allow(answer: web.StreamResponse | web.HTTPException, origin: str) -> None:
    answer.headers["Access-Control-Allow-Origin"] = origin
    answer.headers["Access-Control-Allow-Credentials"] = "true"
    answer.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def browser_origins(allowed: frozenset[str]) -> Middleware:
    """The middleware enforcing the module's rules for the origins `allowed`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origins = request.headers.getall("Origin", [])
        from_page = bool(origins)
        # Two Origin headers come from no browser: neither is believed.
        origin = origins[0] if len(origins) == 1 and origins[0] in allowed else None
        preflight = (
            request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        )
        unknown_path = isinstance(request.match_info.http_exception, web.HTTPNotFound)
        answer: web.StreamResponse
        if not from_page:
            answer = await _answer(request, handler, None)
        elif preflight and not unknown_path:
            if origin is None:
                answer = error_response(forbidden_origin())
            else:
                answer = web.Response(status=204)
                _allow(answer, origin)
                answer.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
                answer.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                answer.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        elif origin is None and request.method not in SAFE_METHODS:
            answer = error_response(forbidden_origin())
        else:
            answer = await _answer(request, handler, origin)
        _vary_origin(answer)
        return answer

    return middleware


async def _answer(request: web.Request, handler: Handler, origin: str | None) -> web.StreamResponse:
    """The handler's answer, readable by the page of `origin` when one is given."""
    try:
        answer = await handler(request)
    except web.HTTPException as exc:  # < 400: the error middleware renders the rest
        if origin is not None:
            _allow(exc, origin)
        _vary_origin(exc)
        raise
    if origin is not None:
        _allow(answer, origin)
    return answer

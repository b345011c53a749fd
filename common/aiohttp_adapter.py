"""Everything that leans on aiohttp's internals, in one place, checked when a service starts.

`raw_frames` says whether a prepared socket takes frames we encode ourselves
(`service/outgoing.py`), written to its transport synchronously, flow control left to the
caller (`service/connection.py` does it): the public `send_frame` is a coroutine, one more
await per recipient on the fan-out path, and builds each frame's header again for every
recipient. That holds while no permessage-deflate was negotiated (aiohttp then writes each
of its own frames, pings and the close, whole and synchronously, so ours interleave with
them at frame boundaries); a socket that compresses, or a run with `RAW_WRITES` off, uses the
public path.

`HardenedRequestHandler` is aiohttp's HTTP protocol with three changes:
- a request aiohttp cannot parse is answered 400 without echoing it and logged once per
  minute at most, without its text: that text is a header line, and header lines carry
  cookies and bearer tokens (aiohttp's own handler logs it at ERROR and echoes it back);
- a WebSocket's frame reader is wrapped in a `FrameMeter`, so every frame the client sends
  is seen (see `common/ws_frames.py`);
- a body that breaks its own framing or encoding is not logged as a server error.

The overridden methods are public in aiohttp but their contract with the frame reader is not:
`check_aiohttp()` verifies the shapes this module relies on, and the services refuse to start
on an aiohttp that lacks them rather than run without these defences.
"""

from __future__ import annotations

import inspect
import logging
from http import HTTPStatus
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_websocket import WebSocketReader

from common.log_throttle import ConditionLog
from common.ws_frames import FrameMeter

log = logging.getLogger(__name__)

_BAD_REQUESTS = ConditionLog(log, "malformed requests answered 400", level=logging.INFO)


class HardenedRequestHandler(web.RequestHandler):
    """aiohttp's request handler without the credential echo, and with a `FrameMeter`."""

    __slots__ = ("frame_meter",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_meter: FrameMeter | None = None

    def set_parser(self, parser: Any, data_received_cb: Any = None) -> None:
        self.frame_meter = FrameMeter(parser)
        # The meter stands in for the reader it wraps: it has the reader's two methods.
        super().set_parser(cast(WebSocketReader, self.frame_meter), data_received_cb)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # A body that breaks its framing or Content-Encoding surfaces again when aiohttp
        # drains the rest of it after the answer (which the body deadline already gave): the
        # client's fault, not a server error, and its text is the client's bytes.
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError | web.RequestPayloadError):
            _BAD_REQUESTS.hit(error=type(error).__name__)
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        # The exception's text quotes the offending line: name the kind of error only.
        _BAD_REQUESTS.hit(error=type(exc).__name__, remote=request.remote)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already started")
        response = web.Response(
            status=status,
            text=f"{status} {HTTPStatus(status).phrase}: {type(exc).__name__}\n",
        )
        response.force_close()
        return response


def frame_meter_of(request: web.BaseRequest) -> FrameMeter | None:
    """The meter in front of an upgraded request's frame reader (None under a plain server)."""
    protocol = request.protocol
    return protocol.frame_meter if isinstance(protocol, HardenedRequestHandler) else None


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


RAW_WRITES = True  # off: every frame goes out by the public `send_frame` (tests flip it)


def raw_frames(ws: web.WebSocketResponse) -> bool:
    """Whether this prepared socket's frames may be written to its transport as encoded by
    `service.outgoing.text_frame`: not when permessage-deflate was negotiated for it."""
    return RAW_WRITES and not ws.compress


def check_aiohttp() -> None:
    """Raises `RuntimeError` naming what is missing if this aiohttp lacks what we override."""
    problems = []
    if not callable(getattr(web.RequestHandler, "log_exception", None)):
        problems.append("RequestHandler.log_exception")
    if _parameters(web.RequestHandler.set_parser)[:3] != ["self", "parser", "data_received_cb"]:
        problems.append("RequestHandler.set_parser(parser, data_received_cb)")
    if _parameters(web.RequestHandler.handle_error)[:5] != [
        "self",
        "request",
        "status",
        "exc",
        "message",
    ]:
        problems.append("RequestHandler.handle_error(request, status, exc, message)")
    wanted = {"manager", "loop", "keepalive_timeout", "lingering_time", "access_log_class"}
    if not wanted <= set(_parameters(web.RequestHandler.__init__)):
        problems.append("RequestHandler(" + ", ".join(sorted(wanted)) + ")")
    if not all(
        callable(getattr(WebSocketReader, name, None)) for name in ("feed_data", "feed_eof")
    ):
        problems.append("WebSocketReader.feed_data / feed_eof")
    if not isinstance(getattr(web.WebSocketResponse, "compress", None), property):
        problems.append("WebSocketResponse.compress")
    if problems:
        raise RuntimeError(
            f"aiohttp {aiohttp.__version__} lacks what this service relies on: "
            + "; ".join(problems)
        )

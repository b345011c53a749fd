"""The adapter over aiohttp's internals refuses to run on an aiohttp that lacks them."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from common.aiohttp_adapter import check_aiohttp


def test_this_aiohttp_has_what_the_adapter_relies_on() -> None:
    check_aiohttp()


def test_a_changed_aiohttp_stops_start_up_naming_what_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def set_parser(self: Any, reader: Any) -> None: ...

    monkeypatch.setattr(web.RequestHandler, "set_parser", set_parser)
    with pytest.raises(RuntimeError, match=r"RequestHandler\.set_parser"):
        check_aiohttp()

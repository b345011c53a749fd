"""Reading a service's `/metrics` as Prometheus would, for the metrics tests of both services."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CHAT_CLIENT

BASIC = {"Authorization": aiohttp.encode_basic_auth(*CHAT_CLIENT)}


class Samples:
    """One scrape: every sample by name and labels, and the families it had."""

    def __init__(self, text: str) -> None:
        self.families: dict[str, str] = {}  # name -> type
        self._values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            for sample in family.samples:
                self._values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for one not exposed yet (a labelled child never counted)."""
        return self._values.get((name, frozenset(labels.items())), 0.0)

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets a sample name is exposed with."""
        return [dict(labels) for sample, labels in self._values if sample == name]


async def scrape(client: TestClient[Any, Any], headers: dict[str, str] | None = None) -> Samples:
    """`/metrics` read with the registered client's credentials (or `headers`)."""
    async with client.get("/metrics", headers=BASIC if headers is None else headers) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/plain"
        return Samples(await r.text())

"""How both services' OpenAPI documents are checked against the live services: the same
schemathesis checks, derandomized and bounded (the same requests on every run)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# Every answer documented: status, media type, body and headers; and never a 5xx.
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def run_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def config(seed: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": seed,
            "cache": {"enabled": False},
            "request-timeout": 10,
            "generation": {"deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    )

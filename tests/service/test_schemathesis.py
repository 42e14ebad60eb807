"""Property-based API test: schemathesis generates requests from our OpenAPI document (a bounded
number per operation) and every answer must be a documented, non-5xx response."""

from __future__ import annotations

import tempfile

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (test extra) not installed")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ipexrx.service import Settings, create_app  # noqa: E402

# Development mode so that generated CDS Hooks calls reach the services instead of stopping at 401.
_dir = tempfile.mkdtemp()
_app = create_app(Settings(dev_mode=True, database_url=f"sqlite:///{_dir}/schemathesis.sqlite3",
                           replay_dir=f"{_dir}/seen"))
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_never_answers_5xx_and_keeps_to_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance])

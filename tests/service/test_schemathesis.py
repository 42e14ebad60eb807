"""Property-based API test: schemathesis generates requests from our OpenAPI document (a bounded
number per operation) and every answer must be a documented, non-5xx response."""

from __future__ import annotations

import tempfile
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (test extra) not installed")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import Case  # noqa: E402
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


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_never_answers_5xx_and_keeps_to_its_schema(case: Case) -> None:
    case.call_and_validate(checks=CHECKS)


# Production mode (JWT required, default limits): generated calls carry no token, so the CDS routes must
# answer their documented 401 - never a 5xx - and everything else behaves as above.
def _jwks() -> dict[str, Any]:
    import json

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key()))
    return {"keys": [{**key, "kid": "k1"}]}


_prod = create_app(Settings(issuers={"https://ehr.example.org": {"jwks": _jwks()}},
                            database_url=f"sqlite:///{_dir}/schemathesis-prod.sqlite3", replay_dir=f"{_dir}/seen-prod"))
prod_schema = schemathesis.openapi.from_asgi("/openapi.json", _prod)


@prod_schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_in_production_mode_never_answers_5xx(case: Case) -> None:
    case.call_and_validate(checks=CHECKS)

"""Schemathesis against the app's own OpenAPI schema on a live server: no input yields a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import API_KEY

EXAMPLES_PER_OPERATION = 60


def test_no_generated_request_gets_a_server_error(server):
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/ingest/market-data/", "/ingest/market-data/batch", "/ready"}
    tried: dict[str, int] = {}

    def run(operation) -> None:
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(operation.as_strategy())
        def check(case) -> None:
            case.headers = (case.headers or {}) | {"X-API-Key": API_KEY}
            response = case.call()
            tried[operation.path] = tried.get(operation.path, 0) + 1
            case.validate_response(response, checks=[not_a_server_error])
            assert response.status_code < 500, (operation.path, response.status_code, response.text[:300])

        check()

    for operation in operations:
        run(operation)
    print(f"schemathesis cases tried: {tried}")
    assert tried["/ingest/market-data/"] >= 10 and tried["/ingest/market-data/batch"] >= 10

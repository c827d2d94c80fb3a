"""Schemathesis against the app's own OpenAPI schema on a live server, with every check: no input
yields a 5xx, every answer matches its documented status, body, headers and media type, every
request the schema calls valid is accepted and every one it calls invalid is refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS, is_check_class, load_all_checks
from schemathesis.generation.modes import GenerationMode

from tests import schemathesis_hooks  # registers its map_case hook for as_strategy too
from tests.conftest import API_KEY, Server, start_server
from tests.support.pgcluster import PgCluster

EXAMPLES_PER_OPERATION = 60
load_all_checks()  # the built-in checks register themselves on import, lazily
# The checks that validate one response; the class-based ones belong to the CLI's runner.
ALL_CHECKS = [check for check in CHECKS.get_all() if not is_check_class(check)]
# The command molecule/default/tests/test_fuzz.py runs against each deployed API, minus the URL.
ST_RUN = ["run", "--checks", "all", "--max-examples", "40", "--no-color"]
ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def server(cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service with the deployed body limit (4 MiB). The session's server caps bodies at
    256 KiB for the 413 tests, and a schema-valid batch of 10,000 records does not fit in that."""
    srv = start_server(cluster, tmp_path_factory.mktemp("st"), extra_env={"MAX_BODY_BYTES": str(4 * 1024 * 1024)})
    yield srv
    srv.stop()


def test_every_check_passes_on_generated_requests(server):
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/ingest/market-data/", "/ingest/market-data/batch", "/ready"}
    assert {check.__name__ for check in ALL_CHECKS} >= {
        "not_a_server_error",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "status_code_conformance",
        "content_type_conformance",
    }
    tried: dict[str, int] = {}

    def run(operation, mode: GenerationMode) -> None:
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            case = schemathesis_hooks.map_case(None, case)  # again, now that the case knows its mode
            case.headers = {**(case.headers or {}), "X-API-Key": API_KEY}
            response = case.call()
            tried[operation.path] = tried.get(operation.path, 0) + 1
            case.validate_response(response, checks=ALL_CHECKS, headers=case.headers)
            assert response.status_code < 500, (operation.path, response.status_code, response.text[:300])

        check()

    for operation in operations:
        run(operation, GenerationMode.POSITIVE)
        if operation.body:  # /health and /ready take no input that could be made invalid
            run(operation, GenerationMode.NEGATIVE)
    print(f"schemathesis cases tried: {tried}")
    assert tried["/ingest/market-data/"] >= 10 and tried["/ingest/market-data/batch"] >= 10


def _requests_logged(server: Server, status: str = r"\d+") -> int:
    return len(re.findall(rf"dw_ingest\.access .* status={status} ", server.log()))


def test_the_command_line_molecule_runs_passes(server, tmp_path):
    """The `st run` of the deployed-API fuzz test, with the same hooks file, against this server."""
    served_before = _requests_logged(server)
    errors_before = _requests_logged(server, r"5\d\d")
    result = subprocess.run(
        [str(ST), *ST_RUN, f"{server.base_url}/openapi.json", "-H", f"X-API-Key: {API_KEY}"],
        env={**os.environ, "SCHEMATHESIS_HOOKS": schemathesis_hooks.__file__},
        cwd=tmp_path,  # st keeps a cache directory where it runs
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert _requests_logged(server) - served_before >= 40
    assert _requests_logged(server, r"5\d\d") == errors_before

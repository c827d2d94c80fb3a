"""/ready says the database is not reachable, never why: the why is in the service's log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from tests.support.rawhttp import (
    unreachable_server,
)
from tests.test_direct_path import InProcess


@pytest.fixture(scope="module")
def unreachable() -> Iterator[InProcess]:
    yield from unreachable_server()


# /ready does not tell the database's error.


def test_ready_answers_a_fixed_503_and_logs_the_reason(unreachable, caplog):
    caplog.set_level(logging.WARNING, logger="dw_ingest")
    response = httpx.get(f"http://127.0.0.1:{unreachable.port}/ready", timeout=10)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "detail": "database not reachable"}
    assert int(response.headers["Retry-After"]) > 0
    assert any(r.getMessage().startswith("not ready: ") and len(r.getMessage()) > 20 for r in caplog.records)

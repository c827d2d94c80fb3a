"""X-Request-ID: the service keeps only what the edge keeps, on both paths, so a client cannot forge
the access line's fields; anything else gets a fresh id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from tests.conftest import record
from tests.support.pgcluster import PgCluster
from tests.support.rawhttp import (
    FRESH_ID,
    strict_server,
)
from tests.test_direct_path import ASGI, DIRECT, InProcess, post


@pytest.fixture(scope="module")
def strict(cluster: PgCluster) -> Iterator[InProcess]:
    yield from strict_server(cluster, "request_id")


# X-Request-ID: only what the edge keeps.


@pytest.mark.parametrize("path", [DIRECT, ASGI])
@pytest.mark.parametrize(
    "incoming",
    ["forged status=200 path=/elsewhere", "a" * 65, "tab\there", "caf\xe9"],
    ids=["spaces", "too long", "tab", "not ASCII"],
)
def test_a_request_id_the_edge_would_not_keep_is_replaced(strict, caplog, path, incoming):
    caplog.set_level(logging.INFO, logger="dw_ingest.access")
    raw = post(path, json.dumps(record()).encode(), extra=f"X-Request-ID: {incoming}\r\n")
    answer = strict.exchange(raw)[0]
    assert answer.startswith(b"HTTP/1.1 200")
    fresh = FRESH_ID.search(answer).group(0)[14:46].decode()
    lines = [r.getMessage() for r in caplog.records if r.name == "dw_ingest.access"]
    assert any(line.startswith(f"request_id={fresh} method=POST path={path} status=200") for line in lines)
    assert not any("forged" in line or "elsewhere" in line or "a" * 65 in line for line in lines)


def test_a_request_id_the_edge_keeps_is_kept(strict):
    kept = "A-z_0.9:~!" + "x" * 54  # 64 printable characters
    for path in (DIRECT, ASGI):
        answer = strict.exchange(post(path, json.dumps(record()).encode(), extra=f"X-Request-ID: {kept}\r\n"))[0]
        assert f"x-request-id: {kept}\r\n".encode() in answer


def test_a_repeated_request_id_counts_by_its_first_value_on_both_paths(strict, caplog):
    """The access line and the answer read a repeated header as the endpoints do: the first wins."""
    caplog.set_level(logging.INFO, logger="dw_ingest.access")
    for path in (DIRECT, ASGI):
        extra = "X-Request-ID: first-id\r\nX-Request-ID: second-id\r\n"
        answer = strict.exchange(post(path, json.dumps(record()).encode(), extra=extra))[0]
        assert b"x-request-id: first-id\r\n" in answer
    lines = [r.getMessage() for r in caplog.records if r.name == "dw_ingest.access"]
    assert sum(line.startswith("request_id=first-id method=POST") for line in lines) == 2
    assert not any("second-id" in line for line in lines)

"""No request is processed once its answer can no longer be sent, and a client that goes away is
no error: no traceback, no ERROR line."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest

from tests.conftest import record
from tests.support.pgcluster import PgCluster
from tests.support.rawhttp import (
    connect,
    errors_in,
    read_until_closed,
    stored,
    strict_server,
    unreachable_server,
)
from tests.test_direct_path import ASGI, DIRECT, InProcess, post


@pytest.fixture(scope="module")
def strict(cluster: PgCluster) -> Iterator[InProcess]:
    yield from strict_server(cluster, "client_gone")


@pytest.fixture(scope="module")
def unreachable() -> Iterator[InProcess]:
    yield from unreachable_server()


# No request processed once its answer cannot be sent; a client going away is not an error.


def test_pipelined_http_1_0_keep_alive_requests_get_one_answer_and_one_write(strict, cluster, caplog):
    """HTTP/1.0 is answered with `connection: close`: the request pipelined behind the first can
    get no answer, so it must not be written either."""
    first, second = record(), record()
    raw = b"".join(
        post(DIRECT, json.dumps(r).encode(), version="1.0", extra="Connection: keep-alive\r\n") for r in (first, second)
    )
    with connect(strict) as sock:
        sock.sendall(raw)
        answer = read_until_closed(sock)
    time.sleep(0.5)  # a second request, if it ran, has written its row and tried to answer by now
    assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 200")
    assert (stored(cluster, strict, first["symbol"]), stored(cluster, strict, second["symbol"])) == (1, 0)
    assert errors_in(caplog) == []


@pytest.mark.parametrize("path", [DIRECT, ASGI])
@pytest.mark.parametrize("sent", ["whole request", "half the body"])
def test_a_client_that_goes_away_is_not_an_error(unreachable, caplog, path, sent):
    """The client closes before its answer: while the write is retried (the database is down) or
    while its body is read. Nothing to answer, and no traceback or ERROR line for it."""
    caplog.set_level(logging.DEBUG)
    raw = post(path, json.dumps(record()).encode(), extra="X-Request-ID: gone\r\n")
    with connect(unreachable) as sock:
        sock.sendall(raw if sent == "whole request" else raw[:-40])
        time.sleep(0.1)
    time.sleep(1.2)  # past the retry budget: the answer has been attempted
    assert errors_in(caplog) == []

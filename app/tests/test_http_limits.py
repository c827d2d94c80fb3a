"""What the HTTP protocol enforces before a request reaches either path, against a real uvicorn and
raw sockets: a request that arrives too slowly gets 408, a header block over the cap 431, both in
JSON, and the connection closes."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import record
from tests.support.pgcluster import PgCluster
from tests.support.rawhttp import (
    BATCH,
    FRESH_ID,
    connect,
    read_until_closed,
    strict_server,
)
from tests.test_direct_path import ASGI, DIRECT, InProcess, post, read_responses, same_answer


@pytest.fixture(scope="module")
def strict(cluster: PgCluster) -> Iterator[InProcess]:
    yield from strict_server(cluster, "http_limits")


# A body that arrives slowly: 408, and the connection closes.


@pytest.mark.parametrize("path", [DIRECT, ASGI, BATCH])
def test_a_body_that_arrives_too_slowly_gets_408_and_the_connection_closes(strict, path, caplog):
    caplog.set_level(logging.INFO, logger="dw_ingest.access")
    payload = json.dumps(record()).encode()
    started = time.monotonic()
    with connect(strict) as sock:
        sock.sendall(post(path, payload, extra="X-Request-ID: slow\r\n")[: -len(payload) // 2])
        answer = read_until_closed(sock)  # the server closes: nothing else to read
    assert 1 <= time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close\r\n" in head and head.endswith(b"\r\nx-request-id: slow")
    assert json.loads(body) == {"detail": "the request did not arrive in full within 1 s"}
    assert any(
        f"path={path} status=408" in r.getMessage() for r in caplog.records if "request_id=slow" in r.getMessage()
    )


def test_the_408_is_the_same_on_both_paths(strict):
    answers = []
    for path in (DIRECT, ASGI):
        payload = json.dumps(record()).encode()
        with connect(strict) as sock:
            sock.sendall(post(path, payload, extra="X-Request-ID: slow\r\n")[:-10])
            answers.append(read_until_closed(sock))
    assert same_answer(answers[0]) == same_answer(answers[1])


def test_a_head_that_arrives_too_slowly_gets_408(strict):
    with connect(strict) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # the blank line never comes
        answer = read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and FRESH_ID.search(head + b"\r\n")
    assert json.loads(body)["detail"] == "the request did not arrive in full within 1 s"


def test_a_body_sent_in_time_in_pieces_is_served(strict):
    rec = record()
    raw = post(DIRECT, json.dumps(rec).encode())
    with connect(strict) as sock:
        for part in (raw[:50], raw[50:-20], raw[-20:]):
            sock.sendall(part)
            time.sleep(0.3)
        assert read_responses(sock, 1)[0].startswith(b"HTTP/1.1 200")
        # The connection serves on: the timer of the request before is gone.
        time.sleep(1.2)
        sock.sendall(post(DIRECT, json.dumps(record()).encode()))
        assert read_responses(sock, 1)[0].startswith(b"HTTP/1.1 200")


# A cap on the header block: 431.


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    def send() -> None:
        with contextlib.suppress(OSError):  # the server closes once it has answered
            sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(16_000)), id="16 MB of headers"),
        pytest.param(b"X-Pad: " + b"a" * (16 * 1024 * 1024) + b"\r\n", id="one 16 MB header"),
        pytest.param(b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 100) for i in range(400)), id="just over the cap"),
    ],
)
def test_a_header_block_over_the_cap_gets_431_and_the_connection_closes(strict, headers):
    with connect(strict) as sock:
        sender = send_in_background(sock, b"GET /health HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
        answer = read_until_closed(sock)
        sender.join(10)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert head.endswith(b"\r\nconnection: close")
    assert json.loads(body) == {"detail": "request line and headers larger than 32768 bytes"}


def test_the_431_is_the_same_on_both_paths(strict):
    pad = "".join(f"X-Pad-{i}: {'a' * 100}\r\n" for i in range(400))
    answers = []
    for path in (DIRECT, ASGI):
        with connect(strict) as sock:
            sock.sendall(post(path, json.dumps(record()).encode(), extra=pad))
            answers.append(read_until_closed(sock))
    assert answers[0].startswith(b"HTTP/1.1 431 ")
    assert same_answer(answers[0]) == same_answer(answers[1])


def test_a_header_block_under_the_cap_is_served(strict):
    headers = "".join(f"X-Pad-{i}: {'a' * 100}\r\n" for i in range(250))  # about 27 KiB
    answer = strict.exchange(f"GET /health HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())[0]
    assert answer.startswith(b"HTTP/1.1 200")

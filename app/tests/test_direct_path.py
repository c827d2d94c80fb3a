"""The direct path of the single-record endpoint (direct.py, http_protocol.py) against a real uvicorn,
a real PostgreSQL and raw sockets: it serves the common request with the very bytes the ASGI path
sends, declines everything else to the ASGI path before anything happened, and keeps HTTP/1.1's
order and connection handling."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import uvicorn
from dw_ingest.app import create_app
from dw_ingest.config import Settings
from dw_ingest.fast_decode import fast_record
from dw_ingest.http_protocol import CoalescingHttpToolsProtocol
from prometheus_client import generate_latest

from tests.conftest import API_KEY, record
from tests.support.pgcluster import PgCluster, free_port

DIRECT = "/ingest/market-data/"
ASGI = "/ingest/market-data"  # the alias: the same endpoint, always through ASGI


@dataclass
class InProcess:
    port: int
    app: object
    served_directly: list[str]

    def exchange(self, raw: bytes, responses: int = 1) -> list[bytes]:
        """Sends raw bytes on one connection and reads `responses` whole responses."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            return read_responses(sock, responses)


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    data, answers = b"", []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(re.search(rb"content-length: (\d+)", data[:head_end]).group(1))
            end = head_end + 4 + length
            if len(data) >= end:
                answers.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {len(answers)} answers: {data!r}")
        data += chunk
    return answers


def post(path: str, body: bytes, *, key: str = API_KEY, extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST {path} HTTP/{version}\r\nHost: t\r\nContent-Type: application/json\r\nX-API-Key: {key}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def same_answer(answer: bytes) -> bytes:
    """An answer with what may differ between two sends of one request: the date, the request id."""
    answer = re.sub(rb"date: [^\r]*", b"date: -", answer)
    answer = re.sub(rb"x-request-id: [0-9a-f]{32}", b"x-request-id: -", answer)
    return re.sub(rb'"request_id":"[0-9a-f]{32}"', b'"request_id":"-"', answer)


def serve(settings: Settings) -> Iterator[InProcess]:
    """The app on uvicorn with the service's protocol, in a thread; each request the direct path
    answers is noted (the spy calls the real method)."""
    app = create_app(settings)
    direct = app.direct_ingest
    served: list[str] = []
    answer = direct.answer

    async def noted_answer(record, headers, server, cycle):
        served.append(record.symbol)
        return await answer(record, headers, server, cycle)

    direct.answer = noted_answer
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        access_log=False,
        log_config=None,
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield InProcess(port, app, served)
    finally:
        server.should_exit = True
        thread.join(20)


def settings_for(database_url: str, **extra: str) -> Settings:
    return Settings.from_env(
        {"ENVIRONMENT": "testing", "DATABASE_URL": database_url, "API_KEYS": API_KEY, "LOG_LEVEL": "info", **extra}
    )


@pytest.fixture(scope="module")
def live(cluster: PgCluster) -> Iterator[InProcess]:
    yield from serve(settings_for(cluster.create_database("direct_path")))


@pytest.fixture(scope="module")
def no_database() -> Iterator[InProcess]:
    # Nothing listens on that port: every write fails "not now", and the retries give up quickly.
    url = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/none"
    yield from serve(settings_for(url, DB_WRITE_RETRY_SECONDS="0.3", READY_TIMEOUT="1"))


def body(**overrides) -> bytes:
    return json.dumps(record(**overrides)).encode()


def test_a_common_record_is_served_directly_with_the_asgi_paths_bytes(live, caplog):
    caplog.set_level(logging.INFO, logger="dw_ingest.access")
    one, two = body(), body()
    direct = live.exchange(post(DIRECT, one, extra="X-Request-ID: same-id\r\n"))[0]
    asgi = live.exchange(post(ASGI, two, extra="X-Request-ID: same-id\r\n"))[0]
    assert direct.startswith(b"HTTP/1.1 200 OK\r\n")
    assert direct.endswith(b'\r\n\r\n{"status":"success"}')
    assert b"x-request-id: same-id\r\n" in direct
    assert same_answer(direct) == same_answer(asgi)
    assert live.served_directly == [json.loads(one)["symbol"]]
    # Both were written, and both logged their line with the counts.
    lines = [r.getMessage() for r in caplog.records if "request_id=same-id" in r.getMessage()]
    assert len(lines) == 2, lines
    for line, path in zip(lines, (DIRECT, ASGI), strict=True):
        assert f"method=POST path={path} status=200" in line
        assert "received=1 inserted=1 duplicates=0" in line


@pytest.mark.parametrize(
    "case",
    [
        pytest.param({"key": "wrong-key"}, id="wrong key: 401"),
        pytest.param({"content_type": "text/plain"}, id="not JSON: 415"),
        pytest.param({"raw": b"{"}, id="broken JSON: 422"),
        pytest.param({"overrides": {"high": "99.00", "low": "99.50"}}, id="high below low: 422"),
        pytest.param({"overrides": {"vwap": "100.123456789"}}, id="nine places: the model decides"),
        pytest.param({"overrides": {"volume": -1}}, id="negative volume: 422"),
        pytest.param({"overrides": {"extra": 1}}, id="unknown field: 422"),
    ],
)
def test_what_the_direct_path_declines_gets_the_asgi_paths_answer(live, case):
    symbol = record()["symbol"]
    payload = case.get("raw") or body(symbol=symbol, **case.get("overrides", {}))
    answers = []
    for path in (DIRECT, ASGI):
        request = post(path, payload, key=case.get("key", API_KEY), extra="X-Request-ID: declined\r\n")
        if "content_type" in case:
            request = request.replace(b"application/json", case["content_type"].encode())
        answers.append(live.exchange(request)[0])
    assert same_answer(answers[0]) == same_answer(answers[1])
    assert symbol not in live.served_directly
    assert not answers[0].startswith(b"HTTP/1.1 200") or "overrides" in case


def test_pipelined_requests_are_answered_in_order_whichever_path_serves_them(live):
    first, second, third = (record() for _ in range(3))
    raw = (
        post(DIRECT, json.dumps(first).encode(), extra="X-Request-ID: first\r\n")
        + post(DIRECT, json.dumps(second).encode(), key="wrong", extra="X-Request-ID: second\r\n")
        + post(DIRECT, json.dumps(third).encode(), extra="X-Request-ID: third\r\n")
    )
    answers = live.exchange(raw, responses=3)
    assert [re.search(rb"x-request-id: (\w+)", a).group(1) for a in answers] == [b"first", b"second", b"third"]
    assert [a[9:12] for a in answers] == [b"200", b"401", b"200"]
    assert first["symbol"] in live.served_directly


def test_connection_close_is_honoured_on_the_direct_path(live):
    rec = record()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(post(DIRECT, json.dumps(rec).encode(), extra="Connection: close\r\n"))
        answer = read_responses(sock, 1)[0]
        assert sock.recv(1) == b""  # closed by the server
    assert b"connection: close\r\n" in answer
    assert answer.startswith(b"HTTP/1.1 200")
    assert rec["symbol"] in live.served_directly


def test_keep_alive_serves_many_requests_on_one_connection(live):
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        for _ in range(5):
            sock.sendall(post(DIRECT, body()))
            assert read_responses(sock, 1)[0].startswith(b"HTTP/1.1 200")


def test_http_1_0_takes_the_asgi_path(live):
    rec = record()
    answer = live.exchange(post(DIRECT, json.dumps(rec).encode(), version="1.0"))[0]
    assert answer.startswith(b"HTTP/1.1 200")
    assert rec["symbol"] not in live.served_directly


def test_a_database_outage_is_the_same_503_on_both_paths(no_database):
    answers = [
        no_database.exchange(post(path, body(symbol="OUTAGE"), extra="X-Request-ID: outage\r\n"))[0]
        for path in (DIRECT, ASGI)
    ]
    assert answers[0].startswith(b"HTTP/1.1 503")
    assert b"retry-after: " in answers[0]
    assert same_answer(answers[0]) == same_answer(answers[1])
    assert no_database.served_directly == ["OUTAGE"]


def test_a_bug_in_the_write_is_a_json_500_with_the_request_id(cluster, caplog):
    """A fault injected into the write (not a database outage): the direct path answers what
    AccessLog answers on the ASGI path (test_lean_dispatch.py), and logs the traceback."""
    app = create_app(settings_for(cluster.create_database("direct_bug")))
    direct = app.direct_ingest

    async def broken_write(_record):
        raise RuntimeError("a bug, not a database outage")

    direct._write = broken_write
    server = SimpleNamespace(default_headers=[(b"date", b"today")])
    cycle = SimpleNamespace(keep_alive=True)
    item = fast_record(body())
    answer = asyncio.run(direct.answer(item, [(b"x-request-id", b"bug-1")], server, cycle))
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 500 Internal Server Error"
    assert b"x-request-id: bug-1" in head
    assert json.loads(payload) == {"detail": "internal error", "request_id": "bug-1"}
    assert any("unhandled error, request_id=bug-1" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize(("first", "second", "status"), [(API_KEY, "wrong", b"200"), ("wrong", API_KEY, b"401")])
def test_a_repeated_key_header_counts_by_its_first_value_on_both_paths(live, first, second, status):
    answers = [
        live.exchange(post(path, body(), key=first, extra=f"X-API-Key: {second}\r\nX-Request-ID: twice\r\n"))[0]
        for path in (DIRECT, ASGI)
    ]
    assert [a[9:12] for a in answers] == [status, status]
    assert same_answer(answers[0]) == same_answer(answers[1])


def test_the_log_line_and_the_metrics_name_the_path_that_answered(live, caplog):
    caplog.set_level(logging.INFO, logger="dw_ingest.access")
    for path, rid in ((DIRECT, "via-direct"), (ASGI, "via-asgi")):
        assert live.exchange(post(path, body(), extra=f"X-Request-ID: {rid}\r\n"))[0].startswith(b"HTTP/1.1 200")
    lines = {r.getMessage().split(" ", 1)[0]: r.getMessage() for r in caplog.records if r.name == "dw_ingest.access"}
    assert lines["request_id=via-direct"].endswith(" via=direct")
    assert lines["request_id=via-asgi"].endswith(" via=asgi")
    metrics = generate_latest().decode()
    for route, via in ((DIRECT, "direct"), (ASGI, "asgi")):
        labels = f'method="POST",route="{route}",status="200",via="{via}"'
        assert re.search(rf"^dw_ingest_request_seconds_count\{{{re.escape(labels)}\}} [1-9]", metrics, re.MULTILINE)

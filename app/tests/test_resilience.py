"""Failure modes: the database going away and coming back, bad configuration, correction feeds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import API_KEY, APP_DIR, record, start_server, unique_symbol
from tests.support.pgcluster import PgCluster


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster this module may stop and start without disturbing the other tests."""
    pg = PgCluster().init()
    yield pg
    pg.destroy()


def test_database_down_gives_503_then_recovers_without_restart(own_cluster, tmp_path):
    server = start_server(own_cluster, tmp_path)
    try:
        with server.client(headers={"X-API-Key": API_KEY}) as c:
            assert c.post("/ingest/market-data/", json=record()).status_code == 200
            own_cluster.stop()
            down = c.post("/ingest/market-data/", json=record())
            assert down.status_code == 503, down.text
            assert int(down.headers["Retry-After"]) > 0
            assert "Traceback" not in down.text
            assert c.post("/ingest/market-data/batch", json=[record()]).status_code == 503
            not_ready = c.get("/ready")
            assert not_ready.status_code == 503 and not_ready.json()["status"] == "unavailable"
            assert c.get("/health").status_code == 200
            own_cluster.start()
            symbol = unique_symbol("R")
            deadline = time.monotonic() + 15
            status = None
            while time.monotonic() < deadline:
                status = c.post("/ingest/market-data/", json=record(symbol)).status_code
                if status == 200:
                    break
                time.sleep(0.2)
            assert status == 200
            assert server.count_symbol(symbol) == 1
            assert c.get("/ready").status_code == 200
        assert server.process.poll() is None
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_service_starts_without_database_and_serves_once_it_is_up(tmp_path):
    pg = PgCluster().init()
    try:
        pg.create_database("late")
        pg.stop()
        server = start_server(pg, tmp_path, database="late", create=False)
        try:
            assert httpx.get(f"{server.base_url}/ready").status_code == 503
            pg.start()
            with server.client(headers={"X-API-Key": API_KEY}) as c:
                assert c.post("/ingest/market-data/", json=record()).status_code == 200
        finally:
            server.stop()
    finally:
        pg.destroy()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "DATABASE_URL is not set"),
        ("mysql://u:p@h/db", "DATABASE_URL must start with postgresql://"),
        ("postgresql://user:pw@localhost:5432/", "DATABASE_URL names no database"),
        ("postgresql://user:pw@localhost:99999/db", "DATABASE_URL has a malformed port"),
    ],
)
def test_bad_database_url_fails_fast_with_one_line(url, message):
    env = {"PATH": os.environ["PATH"], "API_PORT": "1"}
    if url is not None:
        env["DATABASE_URL"] = url
    result = subprocess.run(
        [sys.executable, "-m", "dw_ingest"], cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"dw_ingest: configuration error: {lines[0].split(': ', 2)[2]}"]
    assert message in lines[0]
    assert "pw" not in result.stderr


def test_update_policy_corrects_changed_records_only(cluster, tmp_path):
    server = start_server(cluster, tmp_path, extra_env={"CONFLICT_POLICY": "update"})
    try:
        with server.client(headers={"X-API-Key": API_KEY}) as c:
            symbol = unique_symbol("U")
            original = record(symbol)
            assert c.post("/ingest/market-data/", json=original).status_code == 200
            corrected = original | {"close": "101.1", "vwap": "100.8"}
            assert c.post("/ingest/market-data/", json=corrected).status_code == 200
            assert (
                cluster.psql(f"SELECT close::text FROM staging.market_data WHERE symbol = '{symbol}'", server.database)
                == "101.10000000"
            )
            batch = [corrected, corrected | {"volume": 5}, record(symbol, ts="2026-11-24T15:00:00Z")]
            response = c.post("/ingest/market-data/batch", json=batch)
            assert response.json() == {"status": "success", "received": 3, "inserted": 1, "duplicates": 2}
            assert server.count_symbol(symbol) == 2
            assert (
                cluster.psql(
                    f"SELECT volume FROM staging.market_data WHERE symbol = '{symbol}' AND ts = '2026-11-24T14:30:00Z'",
                    server.database,
                )
                == "5"
            )
    finally:
        server.stop()


def test_ignore_policy_keeps_the_first_version(client, server):
    symbol = unique_symbol("I")
    assert client.post("/ingest/market-data/", json=record(symbol)).status_code == 200
    assert client.post("/ingest/market-data/", json=record(symbol, close="101")).status_code == 200
    assert (
        server.cluster.psql(f"SELECT close::text FROM staging.market_data WHERE symbol = '{symbol}'", server.database)
        == "100.90000000"
    )


def test_schema_file_applies_twice_without_error(cluster):
    cluster.create_database("schema_twice")  # applies it once
    from tests.support.pgcluster import SCHEMA_FILE

    cluster.psql("", "schema_twice", file=SCHEMA_FILE)
    assert (
        cluster.psql(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'staging.market_data'::regclass", "schema_twice"
        )
        == "7"
    )


def _accepted(host_port: tuple[str, int]) -> socket.socket:
    """A connection the server has accepted, its request not yet sent."""
    conn = socket.create_connection(host_port, timeout=10)
    time.sleep(0.3)  # the server's event loop accepts it and waits for its request
    return conn


def test_a_connection_accepted_before_shutdown_gets_its_request_answered(cluster, tmp_path):
    server = start_server(cluster, tmp_path)
    host, port = server.base_url.removeprefix("http://").split(":")
    symbol = unique_symbol("SD")
    body = json.dumps(record(symbol)).encode()
    request = (
        f"POST /ingest/market-data/ HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    fresh = _accepted((host, int(port)))
    served = _accepted((host, int(port)))
    try:
        # A connection already served and idle is closed at shutdown, as before.
        served.sendall(request.replace(symbol.encode(), unique_symbol("SD").encode()))
        assert served.recv(65536).startswith(b"HTTP/1.1 200")
        # The shutdown begins while the fresh connection's request is still on its way: uvicorn
        # alone closed such a connection at once, and the client got a reset or nothing.
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        fresh.sendall(request)
        answer = b""
        while chunk := fresh.recv(65536):
            answer += chunk
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200") and b"connection: close" in head, answer
        assert served.recv(65536) == b""
        assert server.process.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        assert server.count_symbol(symbol) == 1
    finally:
        fresh.close()
        served.close()
        server.stop()


def test_a_connection_that_sends_nothing_does_not_hold_up_shutdown(cluster, tmp_path):
    server = start_server(cluster, tmp_path)
    host, port = server.base_url.removeprefix("http://").split(":")
    silent = socket.create_connection((host, int(port)), timeout=10)
    try:
        time.sleep(0.3)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        # It is closed after the grace for a first request, not after the 15 s graceful timeout.
        assert time.monotonic() - started < 5
        assert silent.recv(65536) == b""
    finally:
        silent.close()
        server.stop()

"""Failure modes: the database going away and coming back, bad configuration, correction feeds."""

from __future__ import annotations

import os
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

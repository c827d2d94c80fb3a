"""The backfill client (python -m dw_ingest.load) against the real service and database: rejects
reported with their line numbers, exact decimals, a rerun after an interruption that resends
nothing acknowledged, and retries through a database outage (real 503s)."""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import API_KEY, APP_DIR, Server, start_server, unique_symbol
from tests.support.pgcluster import PgCluster

HEADER = ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap"]
BASE = datetime(2029, 1, 1, tzinfo=UTC)


def rows(symbol: str, count: int, start: int = 0) -> list[list[str]]:
    return [
        [symbol, (BASE + timedelta(minutes=n)).isoformat(), "100.25", "101.5", "99.75", "100.5", str(n), "100.4"]
        for n in range(start, start + count)
    ]


def write_csv(path: Path, body: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([HEADER, *body])
    return path


def loader_argv(server: Server, path: Path, tmp_path: Path, *extra: str) -> list[str]:
    key = tmp_path / "api-key"
    key.write_text(API_KEY + "\n")
    return [
        sys.executable,
        "-m",
        "dw_ingest.load",
        str(path),
        "--url",
        server.base_url,
        "--api-key-file",
        str(key),
        "--json",
        *extra,
    ]


def run_loader(server: Server, path: Path, tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    result = subprocess.run(
        loader_argv(server, path, tmp_path, *extra), cwd=APP_DIR, capture_output=True, text=True, timeout=300
    )
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_csv_rejects_are_reported_by_line_and_the_rest_is_stored_exactly(server, tmp_path):
    symbol = unique_symbol("L")
    body = rows(symbol, 250)
    body[9][4] = "100.95"  # line 11: low above open and close
    body[120][6] = "-3"  # line 123 once the short row below is in: negative volume
    body[200][2] = "12.345678912"  # line 203: nine decimals
    body[30][2:6] = ["99.99999999", "101.00000001", "99.12345678", "100.87654321"]  # line 32: exact
    body.insert(100, [symbol, "not a time"])  # line 102: too few values
    path = write_csv(tmp_path / "bars.csv", body)

    status, summary, _ = run_loader(server, path, tmp_path, "--batch-size", "40", "--in-flight", "3")
    assert status == 1
    rejected = {line: why for line, why in summary["rejected"]}
    assert sorted(rejected) == [11, 102, 123, 203]
    assert rejected[11].startswith("low:") and "volume" in rejected[123] and "open" in rejected[203]
    assert "values for 8 columns" in rejected[102]
    assert (summary["read"], summary["inserted"], summary["duplicates"]) == (251, 247, 0)
    assert server.count_symbol(symbol) == 247
    stored = server.cluster.psql(
        f"SELECT concat_ws(' ', open, high, low, close) FROM staging.market_data "
        f"WHERE symbol = '{symbol}' AND volume = 30",
        server.database,
    )
    assert stored == "99.99999999 101.00000001 99.12345678 100.87654321"

    # A second load of the same file (its own resume point) stores nothing new.
    status, again, _ = run_loader(server, path, tmp_path, "--resume-file", str(tmp_path / "second.resume"))
    assert status == 1
    assert (again["inserted"], again["duplicates"], len(again["rejected"])) == (0, 247, 4)


def test_json_lines_keep_every_digit_and_name_bad_lines(server, tmp_path):
    symbol = unique_symbol("J")
    record = dict(zip(HEADER, rows(symbol, 1)[0], strict=True)) | {"volume": 5}
    lines = [
        json.dumps(record),
        "",
        '{"symbol": "' + symbol + '", "ts": "2029-01-02T00:00:00Z", "open": 0.00000001, "high": 999999999999.99999999, '
        '"low": 0.00000001, "close": 12.5, "volume": 7.0, "vwap": 1.1}',
        "{not json",
        "[1, 2]",
    ]
    path = tmp_path / "bars.jsonl"
    path.write_text("\n".join(lines) + "\n")
    status, summary, _ = run_loader(server, path, tmp_path)
    assert status == 1
    assert [line for line, _ in summary["rejected"]] == [4, 5]
    assert summary["inserted"] == 2
    assert (
        server.cluster.psql(
            f"SELECT concat_ws(' ', open, high, volume) FROM staging.market_data "
            f"WHERE symbol = '{symbol}' AND volume = 7",
            server.database,
        )
        == "0.00000001 999999999999.99999999 7"
    )


def test_a_rerun_after_an_interruption_resends_nothing_acknowledged(server, tmp_path):
    """The first run reads from a pipe that delivers 950 records and then nothing more: its first
    nine batches of 100 are acknowledged, the tenth is incomplete. It is killed there (SIGKILL:
    only what is on disk counts). The rerun, on the whole file at the same path, must send
    exactly the 1,100 records after line 901: every one of them new, none a duplicate."""
    symbol = unique_symbol("P")
    body = rows(symbol, 2000)
    path = tmp_path / "bars.csv"
    resume = tmp_path / "bars.csv.resume"
    os.mkfifo(path)
    first = subprocess.Popen(
        loader_argv(server, path, tmp_path, "--batch-size", "100", "--in-flight", "2"),
        cwd=APP_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with path.open("w", newline="") as pipe:
            csv.writer(pipe).writerows([HEADER, *body[:950]])
            pipe.flush()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if resume.exists() and json.loads(resume.read_text())["line"] == 901:
                    break
                assert first.poll() is None
                time.sleep(0.1)
            else:
                pytest.fail(f"no resume point at line 901: {resume.read_text() if resume.exists() else 'none'}")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
    except BrokenPipeError:
        pass
    finally:
        if first.poll() is None:
            first.kill()
    assert server.count_symbol(symbol) == 900

    path.unlink()
    write_csv(path, body)
    status, summary, _ = run_loader(server, path, tmp_path, "--batch-size", "100")
    assert status == 0, summary
    assert summary["resumed_after_line"] == 901
    assert summary["rows_this_run"] == 1100
    assert (summary["read"], summary["inserted"], summary["duplicates"]) == (2000, 2000, 0)
    assert server.count_symbol(symbol) == 2000
    assert json.loads(resume.read_text())["finished"] is True


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster this module may stop and start without disturbing the other tests."""
    pg = PgCluster().init()
    yield pg
    pg.destroy()


def test_database_outage_is_retried_until_it_ends(own_cluster, tmp_path):
    server = start_server(own_cluster, tmp_path, extra_env={"RETRY_AFTER_SECONDS": "1"})
    try:
        symbol = unique_symbol("O")
        path = write_csv(tmp_path / "bars.csv", rows(symbol, 300))
        own_cluster.stop()

        # Out of retries: it gives up, says why, and keeps no resume point past what was stored.
        status, summary, stderr = run_loader(server, path, tmp_path, "--retries", "1", "--backoff", "0.1")
        assert status == 3
        assert "gave up" in stderr and "HTTP 503" in stderr
        assert summary["line"] == 0

        loading = subprocess.Popen(
            loader_argv(server, path, tmp_path, "--retries", "100", "--backoff", "0.1", "--batch-size", "100"),
            cwd=APP_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        messages: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [messages.put(line) for line in loading.stderr], daemon=True).start()
        try:
            message = messages.get(timeout=60)
            while "retry" not in message:
                message = messages.get(timeout=60)
            assert "HTTP 503" in message
            own_cluster.start()
            out, _ = loading.communicate(timeout=120)
        finally:
            if loading.poll() is None:
                loading.kill()
        assert loading.returncode == 0
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["retries"] >= 1
        assert (summary["read"], summary["inserted"], summary["duplicates"]) == (300, 300, 0)
        assert server.count_symbol(symbol) == 300
    finally:
        server.stop()

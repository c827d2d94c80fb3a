"""The simulator against a live server: 4 to 8 consistent rows, and a failing exit when refused."""

from __future__ import annotations

import random
import subprocess
import sys
from decimal import Decimal

from dw_ingest.models import validate_record
from dw_ingest.simulator import DEFAULT_SYMBOLS, make_records

from tests.conftest import API_KEY, APP_DIR


def _run(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dw_ingest.simulator", "--url", f"{server.base_url}/ingest/market-data/", *args],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_simulator_puts_four_to_eight_consistent_rows(server):
    symbols = ",".join(DEFAULT_SYMBOLS)
    before = server.count(f"symbol = ANY(string_to_array('{symbols}', ','))")
    result = _run(server, "--api-key", API_KEY)
    assert result.returncode == 0, result.stderr
    added = server.count(f"symbol = ANY(string_to_array('{symbols}', ','))") - before
    assert 4 <= added <= 8
    assert f"sent={added} accepted={added} failed=0" in result.stdout
    rows = server.cluster.psql(
        "SELECT count(*) FROM staging.market_data WHERE low <= least(open, close) AND greatest(open, close) <= high "
        f"AND vwap BETWEEN low AND high AND symbol = ANY(string_to_array('{symbols}', ','))",
        server.database,
    )
    assert int(rows) == before + added


def test_simulator_exits_non_zero_when_records_are_refused(server):
    result = _run(server, "--api-key", "wrong-key", "--min-records", "2", "--max-records", "2")
    assert result.returncode == 1
    assert "sent=2 accepted=0 failed=2" in result.stdout
    assert "401" in result.stderr


def test_simulator_retries_then_fails_on_unreachable_server():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dw_ingest import simulator; "
            "simulator.time.sleep = lambda s: None; "
            "sys.exit(simulator.main(['--url', 'http://127.0.0.1:9/x', '--min-records', '1', "
            "'--max-records', '1']))",
        ],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "failed after 5 attempts" in result.stderr


def test_generated_records_always_pass_validation():
    rng = random.Random(7)
    records = make_records(2000, DEFAULT_SYMBOLS, rng)
    assert len({(r["symbol"], r["ts"]) for r in records}) == len(records)
    for raw in records:
        parsed = validate_record(
            {k: Decimal(v) if k in ("open", "high", "low", "close", "vwap") else v for k, v in raw.items()}
        )
        assert parsed.low <= parsed.vwap <= parsed.high

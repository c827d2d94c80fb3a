"""After converge.yml ran migrate.yml's three steps against mig-legacy while its writer kept
inserting: every committed row is on the new server, both sides agree, nothing is left behind."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid

import pytest
from migration_checks import DATABASES, STATE_DIR, WRITER_DIR, api_key, plain_output, run_playbook, sql

# The old rows in the new layout, computed here independently of the role's own checksum SQL.
LEGACY_ROWS = (
    "SELECT md5(string_agg(concat_ws('|', id, ticker, extract(epoch FROM trade_time)::numeric(20,6), "
    "open_price::numeric(20,8), high_price::numeric(20,8), low_price::numeric(20,8), close_price::numeric(20,8), "
    "volume, vwap::numeric(20,8), extract(epoch FROM created_at)::numeric(20,6)), E'\\n' ORDER BY id)), "
    "count(*), max(id) "
    "FROM staging.market_data"
)
NEW_ROWS = (
    "SELECT md5(string_agg(concat_ws('|', id, symbol, extract(epoch FROM ts)::numeric(20,6), open, high, low, close, "
    "volume, vwap, extract(epoch FROM ingested_at)::numeric(20,6)), E'\\n' ORDER BY id)), count(*), max(id) "
    "FROM staging.market_data WHERE id <= {max_id}"
)


def _committed(legacy, database: str) -> dict[int, dt.datetime]:
    lines = legacy.file(f"{WRITER_DIR}/{database}.committed").content_string.split("\n")
    rows = {}
    for line in filter(None, lines):
        row_id, _, trade_time = line.split()
        rows[int(row_id)] = dt.datetime.fromisoformat(trade_time)
    return rows


@pytest.mark.parametrize("database", DATABASES)
def test_every_row_the_writer_committed_is_on_the_new_server(host, legacy, markers, database):
    committed = _committed(legacy, database)
    assert len(committed) > 50, "the writer committed too little during the migration to prove anything"
    on_new = {}
    for line in sql(
        host,
        database,
        "SELECT id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') "
        "FROM staging.market_data WHERE symbol = 'LIVE'",
    ).split("\n"):
        if line:
            row_id, ts = line.split("|")
            on_new[int(row_id)] = dt.datetime.fromisoformat(ts)
    missing = {i: t for i, t in committed.items() if on_new.get(i) != t}
    assert not missing, f"{database}: {len(missing)} committed rows missing, e.g. {list(missing.items())[:3]}"
    # The writer kept trying after the cutover revoked its INSERT, and none of those tries committed.
    cut_over_at = dt.datetime.fromisoformat(markers[database]["cut_over_at"]).replace(tzinfo=None)
    attempted = legacy.file(f"{WRITER_DIR}/{database}.attempted").content_string.split()
    assert any(dt.datetime.fromisoformat(t) > cut_over_at for t in attempted)
    assert max(committed.values()) < cut_over_at
    assert max(committed) <= markers[database]["max_key"]


@pytest.mark.parametrize("database", DATABASES)
def test_counts_and_checksums_are_equal(host, legacy, markers, database):
    old_sum, old_count, old_max = sql(legacy, database, LEGACY_ROWS).split("|")
    new_sum, new_count, new_max = sql(host, database, NEW_ROWS.format(max_id=old_max)).split("|")
    assert (new_count, new_max, new_sum) == (old_count, old_max, old_sum)
    assert int(old_count) == markers[database]["rows"] > 3000
    assert markers[database]["method"] == ("copy" if database == "cosc471_test" else "logical")


@pytest.mark.parametrize("database", DATABASES)
def test_nothing_is_duplicated(host, database):
    counts = sql(
        host, database, "SELECT count(*), count(DISTINCT id), count(DISTINCT (symbol, ts)) FROM staging.market_data"
    )
    total, ids, keys = counts.split("|")
    assert total == ids == keys


def test_new_apis_write_on_top_without_key_conflicts(host, environments, vault, markers):
    for env in environments:
        symbol = "N" + uuid.uuid4().hex[:7].upper()
        body = json.dumps(
            {
                "symbol": symbol,
                "ts": "2026-11-27T12:00:00Z",
                "open": 10,
                "high": 11,
                "low": 9,
                "close": 10.5,
                "volume": 100,
                "vwap": 10.2,
            }
        )
        status = host.check_output(
            f"curl -s -o /dev/null -w '%{{http_code}}' -X POST -H 'Content-Type: application/json' "
            f"-H 'X-API-Key: {api_key(vault, env['name'])}' "
            f"--data '{body}' http://127.0.0.1:{env['api_port']}/ingest/market-data/"
        )
        assert status == "200", f"{env['name']}: {status}"
        new_id = int(sql(host, env["database"], f"SELECT id FROM staging.market_data WHERE symbol = '{symbol}'"))
        assert new_id > markers[env["database"]]["max_key"]


def _scram_matches(verifier: str, password: str) -> bool:
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    assert match, "not a SCRAM verifier"
    iterations, salt, stored_key = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest() == stored_key


def test_the_old_password_exists_nowhere_on_the_new_server(host):
    found = host.run(
        "grep -rlsF letmein /etc /opt /root /home /tmp /srv /usr/local /var "
        "--exclude-dir=cache --exclude-dir=apt --exclude-dir=dpkg"
    )
    assert found.rc == 1, f"letmein found in: {found.stdout}"
    verifiers = sql(host, "postgres", "SELECT rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL").split()
    assert verifiers
    assert not [v for v in verifiers if _scram_matches(v, "letmein")]
    assert sql(host, "postgres", "SELECT count(*) FROM pg_subscription") == "0"
    assert not host.file(f"{STATE_DIR}/source.pgpass").exists


def test_the_source_keeps_no_slot_or_publication(legacy):
    assert sql(legacy, "postgres", "SELECT count(*) FROM pg_replication_slots") == "0"
    for database in DATABASES:
        assert sql(legacy, database, "SELECT count(*) FROM pg_publication") == "0"


def test_the_new_table_has_its_own_layout_again(host):
    for database in DATABASES:
        columns = sql(
            host,
            database,
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
            "WHERE attrelid = 'staging.market_data'::regclass AND attnum > 0 AND NOT attisdropped",
        )
        assert columns == "id,symbol,ts,open,high,low,close,volume,vwap,ingested_at"
        assert (
            sql(
                host,
                database,
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'staging.market_data'::regclass AND NOT tgisinternal",
            )
            == "0"
        )


def test_a_rerun_after_the_cutover_changes_nothing_and_says_so():
    result = run_playbook("migrate.yml", "-e", "migrate_source=mig-legacy", "-e", "migrate_step=cutover")
    output = plain_output(result.stdout)
    assert result.returncode == 0, output[-3000:]
    assert re.search(r"mig-server : ok=\d+ changed=0 ", output), output[-2000:]
    assert "nothing to do" in output


@pytest.mark.parametrize(
    ("source", "extra", "error"),
    [
        # The default checks the chain: a bundle without the old server's CA is refused...
        (
            "host=mig-legacy",
            ["-e", "migration_source_ca_file=/etc/ssl/certs/ssl-cert-snakeoil.pem"],
            "certificate verify failed",
        ),
        # ...and the name: its address is not the name its certificate carries.
        ("host=10.89.43.11", [], "does not match host name"),
    ],
)
def test_the_source_certificate_is_verified_by_default(host, source, extra, error):
    result = run_playbook(
        "migrate.yml",
        "-e",
        f"migrate_source='{source}'",
        "-e",
        "migrate_step=prepare",
        "-e",
        "migration_state_dir=/tmp/migration-probe",
        *extra,
    )
    host.run("rm -rf /tmp/migration-probe")
    output = plain_output(result.stdout + result.stderr)
    assert result.returncode != 0
    assert error in output, output[-3000:]
    assert sql(host, "postgres", "SELECT count(*) FROM pg_subscription") == "0"


def test_prepare_refuses_a_new_table_that_already_has_rows(host):
    # As if nothing were cut over yet (another state directory): the tables now hold rows, and
    # prepare must stop before it changes anything, naming the databases and what to do.
    result = run_playbook(
        "migrate.yml",
        "-e",
        "migrate_source='host=mig-legacy port=5432'",
        "-e",
        "migrate_step=prepare",
        "-e",
        "migration_state_dir=/tmp/migration-probe",
    )
    host.run("rm -rf /tmp/migration-probe")
    # ansible-core writes a failed task's message to stderr.
    output = plain_output(result.stdout + result.stderr)
    assert result.returncode != 0
    for database in DATABASES:
        assert re.search(rf"{database}: staging.market_data on the new server already has \d+ rows", output), output
    assert "take no writes on the new server before the cutover" in output
    assert sql(host, "postgres", "SELECT count(*) FROM pg_subscription") == "0"

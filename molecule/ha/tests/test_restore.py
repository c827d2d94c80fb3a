"""Restores of the Patroni cluster, after the failovers of test_patroni.py (this file runs after it):
a backup taken after a failover passes the restore drill, a point-in-time restore of the whole
cluster leaves one leader, a synchronous standby and every member on the new timeline, holding what
was committed before the target and nothing after it; and one environment (dev) goes back to a
point in time on the member that leads, replicated to every standby, while prod keeps writing
through the edge without a failed request."""

from __future__ import annotations

import json
import re
import time
import uuid

from conftest import (
    MEMBERS,
    PGBACKREST,
    api_key,
    backups,
    leader,
    member,
    plain_output,
    psql,
    record,
    run_playbook,
    start_load,
    stop_load,
    wait_for,
    wait_healthy,
)
from support import burst, market_record

DATABASE = "cosc471_test"


def _timeline(wal_segment: str) -> int:
    return int(wal_segment[:8], 16)


def _insert(host, symbol: str) -> None:
    psql(
        host,
        "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
        f"VALUES ('{symbol}', now(), 1, 1, 1, 1, 1, 1)",
        DATABASE,
    )


def _holds(host, symbol: str) -> bool:
    return psql(host, f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", DATABASE) == "1"


def test_a_backup_taken_after_a_failover_passes_the_drill(repository):
    view = wait_healthy()
    first = backups(repository)[0]
    # The failovers and switchovers before this test moved the cluster to a later timeline.
    assert view[0]["TL"] > _timeline(first["archive"]["start"]), (view, first["archive"])
    repository.check_output(f"{PGBACKREST} --repo=1 --type=incr backup")
    newest = backups(repository)[-1]
    assert _timeline(newest["archive"]["start"]) == view[0]["TL"], newest["archive"]
    drill = run_playbook("restore-drill.yml")
    flat = plain_output(drill.stdout + drill.stderr)
    assert drill.returncode == 0, flat[-3000:]
    assert "restore drill passed, counts match" in flat, flat[-3000:]
    # It ran on the member that leads (the others stopped at once), and compared every environment.
    reporters = re.findall(r"ok: \[([\w-]+)\] => (?:\{ \"msg\": \"|msg: '?)restore drill repo1 target=", flat)
    assert reporters == [leader(view)], flat[-3000:]
    rows = re.findall(r"(cosc471_\w+) live=(\d+) restored=(\d+)", flat)
    assert {database for database, _, _ in rows} == {"cosc471_prod", "cosc471_dev", "cosc471_test"}, rows
    assert all(live == restored for _, live, restored in rows), rows
    assert sum(int(live) for _, live, _ in rows) > 0, rows


def test_point_in_time_restore_of_the_cluster(api, repository, environments, vault):
    before = wait_healthy()
    old_leader = leader(before)
    # Restored onto a member that does not lead now: any member can be the one restored.
    restored = next(m["Member"] for m in before if m["Role"] == "Replica")
    kept, undone = f"PITR{uuid.uuid4().hex[:6].upper()}", f"UNDO{uuid.uuid4().hex[:6].upper()}"
    lead = member(old_leader)
    _insert(lead, kept)
    time.sleep(1)
    target = psql(lead, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    time.sleep(1)
    _insert(lead, undone)
    timeline_before = before[0]["TL"]

    restore = run_playbook(
        "restore.yml", "-e", f"restore_confirm={restored}", "-e", json.dumps({"restore_target": target}), timeout=1800
    )
    flat = plain_output(restore.stdout + restore.stderr)
    assert restore.returncode == 0, flat[-4000:]
    assert re.search(rf"{restored} leads on timeline (\d+)", flat), flat[-3000:]

    # One leader (the restored member), a synchronous standby, every member on the new timeline.
    after = wait_healthy()
    assert leader(after) == restored, after
    timeline = after[0]["TL"]
    assert timeline > timeline_before, (timeline_before, after)
    # Every member holds what was committed before the target, and nothing after it.
    for name in MEMBERS:
        host = member(name)
        wait_for(lambda h=host: _holds(h, kept), 60, f"{name} to hold the row committed before the target")
        assert not _holds(host, undone), f"{name} still holds the row committed after the target"
    # The replicas stream from the new leader on its timeline (restored from the repository, not
    # rewound: no pg_rewind or base backup was needed).
    for name in MEMBERS:
        if name == restored:
            continue
        received = psql(member(name), "SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'")
        assert received == str(timeline), (name, received)
    # The APIs are back and write to the new leader.
    prod = next(env for env in environments if env["name"] == "prod")
    written = f"API{uuid.uuid4().hex[:6].upper()}"
    body = json.dumps(market_record(written, "2026-01-02T03:04:05Z", volume=7))
    status = api.check_output(
        f"curl -sS -o /dev/null -w '%{{http_code}}' -H 'Content-Type: application/json' "
        f"-H 'X-API-Key: {api_key(vault, 'prod')}' "
        f"--data '{body}' http://127.0.0.1:{prod['api_port']}/ingest/market-data/"
    )
    assert status == "200", status
    assert (
        psql(member(restored), f"SELECT count(*) FROM staging.market_data WHERE symbol = '{written}'", prod["database"])
        == "1"
    )
    # The repository's newest backup is of the restored cluster (new replicas restore from it).
    newest = backups(repository)[-1]
    assert _timeline(newest["archive"]["start"]) == timeline, newest["archive"]


TABLE = "staging.market_data"
# Every column, in id order: two equal fingerprints mean the same rows, value for value.
FINGERPRINT = f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM {TABLE} t"
PROD_LOAD = "/run/recover-prod-load"
DEV_LOAD = "/run/recover-dev-load"


def _dev_burst(api, env: dict, vault, symbol: str) -> None:
    """Two seconds of dev writes through its API on the API host; every one acknowledged."""
    burst(
        api,
        DEV_LOAD,
        [
            {
                "name": "dev",
                "url": f"http://127.0.0.1:{env['api_port']}/ingest/market-data/",
                "key": api_key(vault, "dev"),
                "symbol": symbol,
                "keepalive": False,
                "pause": 0.02,
            }
        ],
    )


def test_recover_dev_on_the_patroni_cluster_while_prod_writes_through_the_edge(api, client, environments, vault):
    by_name = {e["name"]: e for e in environments}
    dev, prod = by_name["dev"], by_name["prod"]
    lead = member(leader(wait_healthy()))
    prod_symbol = f"RECOVER.P{uuid.uuid4().hex[:6].upper()}"
    start_load(
        client,
        PROD_LOAD,
        [
            {
                "name": "prod",
                "url": f"https://ha-api1:{prod['edge_port']}/ingest/market-data/",
                "key": api_key(vault, "prod"),
                "symbol": prod_symbol,
                "keepalive": True,
                "pause": 0.05,
            }
        ],
    )
    try:
        _dev_burst(api, dev, vault, "RECOVER.DEV")
        # T falls between two equal fingerprints: no dev commit around it (the simulator may write).
        for _ in range(5):
            dev_at_t = psql(lead, FINGERPRINT, dev["database"])
            target = psql(
                lead, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
            )
            if psql(lead, FINGERPRINT, dev["database"]) == dev_at_t:
                break
        else:
            raise AssertionError("dev kept changing around T")
        # After T: more dev writes (they must not come back), then the mistake.
        _dev_burst(api, dev, vault, "RECOVER.LATE")
        psql(lead, f"DROP TABLE {TABLE}", dev["database"])

        started = time.monotonic()
        result = run_playbook(
            "recover-environment.yml",
            "-e",
            json.dumps({"env": "dev", "target": target, "recover_confirm": "dev", "table": TABLE}),
        )
        took = time.monotonic() - started
    finally:
        prod_result = stop_load(client, PROD_LOAD, timeout=60)["prod"]
    flat = plain_output(result.stdout + result.stderr)
    assert result.returncode == 0, flat[-4000:]
    report = re.search(r"recovered dev \(.*? took [\d.]+ s", flat).group(0)

    # Every member, the standbys too (they replicate the swap), holds dev's rows as of T and none
    # of the writes after it.
    for name in MEMBERS:
        host = member(name)
        wait_for(
            lambda h=host: psql(h, f"{FINGERPRINT} WHERE ingested_at <= '{target}'", dev["database"]) == dev_at_t,
            60,
            f"{name} to hold dev's rows as of T",
        )
        late = psql(host, f"SELECT count(*) FROM {TABLE} WHERE symbol = 'RECOVER.LATE'", dev["database"])
        assert late == "0", (name, late)
    # Prod: every request through the edge acknowledged and stored, on the leader.
    assert prod_result["failures"] == [], prod_result["failures"][:5]
    assert prod_result["acked"] == prod_result["sent"] > 100, prod_result
    stored = psql(lead, f"SELECT count(*) FROM {TABLE} WHERE symbol = '{prod_symbol}'", prod["database"])
    assert int(stored) == prod_result["acked"], (stored, prod_result)
    record(
        {
            "test": "recover_environment",
            "playbook_s": round(took, 1),
            "prod_sent": prod_result["sent"],
            "prod_failed": len(prod_result["failures"]),
            "report": report,
        }
    )
    # Dev's API writes again.
    _dev_burst(api, dev, vault, "RECOVER.AFTER")

"""The real restore (playbooks/restore.yml), proven by destroying the cluster once per local
repository: rows committed before the target come back exactly, none after it do, recovery stopped
where it was told, the timeline moved on, and the APIs answer again. Also: the playbook refuses
without its confirmation, and verify finds the damage that pgBackRest's exit status hides."""

from __future__ import annotations

import json
import time

import pytest
from conftest import PGBACKREST, run_playbook

DATABASE = "cosc471_test"
# Rows written in each phase: before the backup (N1), after it and before the target (N2), and
# after the target (N3). The phase is stored in the volume column.
ROWS = {1: 40, 2: 30, 3: 20}


def _insert(psql, symbol: str, phase: int) -> None:
    result = psql.run(
        "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
        f"SELECT '{symbol}', timestamptz '2031-01-01 00:00+00' + make_interval(mins => {phase * 1000} + g), "
        f"1, 1, 1, 1, {phase}, 1 FROM generate_series(1, {ROWS[phase]}) g",
        db=DATABASE,
    )
    assert result.rc == 0, result.stderr


def _timeline(psql) -> int:
    return int(psql.value("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"))


def _ready_codes(host, environments) -> dict[str, str]:
    return {
        env.name: host.run(
            f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://127.0.0.1:{env.api_port}/ready"
        ).stdout
        for env in environments
    }


@pytest.mark.parametrize("confirm", [None, "some-other-host"])
def test_restore_refuses_without_naming_the_host(host, psql, environments, confirm):
    args = ["-e", json.dumps({"restore_confirm": confirm})] if confirm else []
    result = run_playbook("restore.yml", *args, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "overwrites the live PostgreSQL cluster" in output and "restore_confirm" in output, output[-2000:]
    # It says that every environment goes back in time, naming each, and where one alone is recovered.
    assert "rewinds EVERY environment" in output and "recover-environment.yml" in output, output[-2000:]
    assert all(f"{env.name} ({env.database})" in output for env in environments), output[-2000:]
    # Nothing was stopped.
    assert "Stop the API units" not in output
    assert psql.value("SELECT 1") == "1"
    assert set(_ready_codes(host, environments).values()) == {"200"}


# repo1 only: the scheduled restore drill restores repo2 (encrypted) and repo1 in test_backup.py
# and test_monitoring.py, and restore.yml passes restore_repo to pgBackRest the same way for each.
@pytest.mark.parametrize("repo", [1])
def test_point_in_time_restore_after_losing_pg_control(host, psql, environments, repo):
    symbol = f"RESTORE.PROOF{repo}"
    major = int(psql.value("SHOW server_version_num")) // 10000
    service = f"postgresql@{major}-main.service"
    data_dir = psql.value("SHOW data_directory")
    server_log = f"/var/log/postgresql/postgresql-{major}-main.log"

    # A rerun on the same instance starts from none of this test's rows.
    psql.value(f"DELETE FROM staging.market_data WHERE symbol = '{symbol}'", db=DATABASE)
    _insert(psql, symbol, 1)
    started = time.monotonic()
    host.check_output(f"{PGBACKREST} --repo={repo} --type=full backup")
    backup_seconds = time.monotonic() - started
    _insert(psql, symbol, 2)
    psql.value("SELECT pg_switch_wal()")
    # The N2 rows are committed before this instant and the N3 rows after it.
    target = psql.value("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    _insert(psql, symbol, 3)
    psql.value("SELECT pg_switch_wal()")
    host.check_output(f"{PGBACKREST} check")
    timeline_before = _timeline(psql)
    log_offset = int(host.check_output(f"stat -c %s {server_log}"))

    host.check_output(f"systemctl stop {service}")
    host.check_output(f"rm {data_dir}/global/pg_control")
    assert host.run(f"systemctl start {service}").rc != 0, "the damaged cluster still started"

    started = time.monotonic()
    result = run_playbook(
        "restore.yml",
        "-e",
        json.dumps({"restore_confirm": host.backend.hostname, "restore_repo": repo, "restore_target": target}),
    )
    restore_seconds = time.monotonic() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    rows = psql.value(
        f"SELECT volume, count(*) FROM staging.market_data WHERE symbol = '{symbol}' GROUP BY 1", db=DATABASE
    )
    counts = {int(phase): int(n) for phase, n in (line.split("|") for line in rows.splitlines())}
    assert counts == {1: ROWS[1], 2: ROWS[2]}, f"restored to {target}: rows by phase {counts}"
    recovery_log = host.check_output(f"tail -c +{log_offset + 1} {server_log}")
    assert "recovery stopping before commit of transaction" in recovery_log, recovery_log[-2000:]
    assert _timeline(psql) > timeline_before
    assert _ready_codes(host, environments) == {env.name: "200" for env in environments}
    assert host.service("market-data-simulator.timer").is_running

    size = next(
        b["info"]["repository"]["delta"]
        for b in reversed(json.loads(host.check_output(f"{PGBACKREST} --repo={repo} info --output=json"))[0]["backup"])
        if b["type"] == "full" and b["database"]["repo-key"] == repo
    )
    reported = next(line for line in result.stdout.splitlines() if f"restored repo{repo} to" in line)
    print(
        f"repo{repo}: full backup {size / 1e6:.1f} MB in repo, {backup_seconds:.1f} s; "
        f"restore playbook {restore_seconds:.1f} s; {reported.strip()}"
    )


def test_verify_finds_damage_that_its_exit_status_hides(host):
    healthy = run_playbook("verify-backups.yml", timeout=600)
    assert healthy.returncode == 0, (healthy.stdout + healthy.stderr)[-3000:]
    assert all(f"repo{repo} verified:" in healthy.stdout for repo in (1, 2, 3)), healthy.stdout[-3000:]

    copy = "/var/tmp/repo1-copy"
    host.check_output(f"rm -rf {copy} && cp -a /var/lib/pgbackrest-local {copy}")
    try:
        victim = host.check_output(f"find {copy}/backup -path '*/pg_data/PG_VERSION*' -print -quit")
        host.check_output(f"echo damaged > {victim}")
        # pgBackRest itself exits 0 on a damaged repository: this is why its summary is parsed.
        assert host.run(f"{PGBACKREST} --repo=1 --repo1-path={copy} verify").rc == 0
        damaged = run_playbook(
            "verify-backups.yml", "-e", json.dumps({"pgbackrest_verify_repos": [1], "pgbackrest_verify_path": copy})
        )
        output = damaged.stdout + damaged.stderr
        assert damaged.returncode != 0
        assert "stanza status is error" in output and "files valid" in output, output[-3000:]
    finally:
        host.check_output(f"rm -rf {copy}")


def test_verify_refuses_a_copy_path_for_several_repositories():
    result = run_playbook("verify-backups.yml", "-e", json.dumps({"pgbackrest_verify_path": "/var/tmp/copy"}))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "pgbackrest_verify_path names a copy of one repository" in output, output[-2000:]
    assert "pgbackrest : Verify the repositories" not in output

"""Backups: every repository holds a full backup, archiving works, timers are scheduled, the
restore drill restores from local and S3 storage and matches counts, and an unwritable repo2 does
not stop archiving to repo1."""

from __future__ import annotations

import json
import time

import pytest
from conftest import PGBACKREST, STANZA, refresh_backup_metrics, role_default, run_playbook
from support import unwritable

REPO2 = role_default("pgbackrest", "pgbackrest_repo2_path")

# repo1 local, repo2 secondary storage, repo3 S3 (enabled by this scenario's group s3_repo3).
REPOS = {1, 2, 3}


def _info(host) -> dict:
    return json.loads(host.check_output(f"{PGBACKREST} info --output=json"))[0]


def test_each_repository_holds_a_full_backup(host):
    info = _info(host)
    assert info["status"]["code"] == 0, info["status"]
    repos_with_full = {b["database"]["repo-key"] for b in info["backup"] if b["type"] == "full"}
    assert repos_with_full == REPOS
    for backup in info["backup"]:
        print(
            f"repo{backup['database']['repo-key']} {backup['type']} {backup['label']}: "
            f"{backup['info']['repository']['delta']} bytes in repo, "
            f"{backup['timestamp']['stop'] - backup['timestamp']['start']} s"
        )


def test_repos_leaving_the_host_are_encrypted_and_config_is_private(host):
    conf = host.file("/etc/pgbackrest/pgbackrest.conf")
    assert (conf.mode, conf.user) == (0o640, "postgres")
    text = host.check_output("cat /etc/pgbackrest/pgbackrest.conf")
    assert "repo2-cipher-type=aes-256-cbc" in text and "repo3-cipher-type=aes-256-cbc" in text
    assert _info(host)["cipher"] in ("mixed", "aes-256-cbc")


def test_archive_command_and_check(host):
    assert f"pgbackrest --stanza={STANZA} archive-push" in host.check_output(
        "runuser -u postgres -- psql -XAtc 'SHOW archive_command'"
    )
    assert host.run(f"{PGBACKREST} check").rc == 0


def test_timers_scheduled(host):
    expected = {
        "pgbackrest-daily.timer": "02:30",
        "pgbackrest-weekly-full-repo1.timer": "01:30",
        "pgbackrest-weekly-full-repo2.timer": "03:30",
        "pgbackrest-weekly-full-repo3.timer": "03:30",
    }
    for timer, clock in expected.items():
        assert host.service(timer).is_enabled
        assert f" {clock}:00 ;" in host.check_output(f"systemctl show -P TimersCalendar {timer}"), timer
        next_at = int(host.check_output(f'date -d "$(systemctl show -P NextElapseUSecRealtime {timer})" +%s'))
        assert 0 < next_at - time.time() <= 7 * 86400 + 300


def test_verify_timers_scheduled(host):
    for repo, day in ((1, "Tue"), (2, "Wed"), (3, "Thu")):
        timer = f"pgbackrest-verify-repo{repo}.timer"
        assert host.service(timer).is_enabled
        assert f"{day} *-*-* 04:30:00" in host.check_output(f"systemctl show -P TimersCalendar {timer}"), timer


def test_verify_unit_runs_in_its_sandbox_and_records_its_outcome(host):
    metrics = "/var/lib/prometheus/node-exporter/dw_pgbackrest_verify_repo1.prom"
    result = host.run("systemctl start pgbackrest-verify-repo1.service")
    journal = host.check_output("journalctl -u pgbackrest-verify-repo1.service -n 20 --no-pager")
    assert result.rc == 0, journal
    assert "repo1 verified:" in journal, journal
    text = host.check_output(f"cat {metrics}")
    assert f'dw_pgbackrest_verify_ok{{stanza="{STANZA}",repo="1"}} 1' in text, text
    for name in (
        "last_success_timestamp_seconds",
        "duration_seconds",
        "max_age_seconds",
        "scheduled_timestamp_seconds",
    ):
        assert f"dw_pgbackrest_verify_{name}{{" in text, text


def test_restore_drill_timers_scheduled(host):
    for repo, day in ((1, "08"), (2, "15"), (3, "22")):
        timer = f"pgbackrest-drill-repo{repo}.timer"
        assert host.service(timer).is_enabled
        assert f"*-*-{day} 05:30:00" in host.check_output(f"systemctl show -P TimersCalendar {timer}"), timer


def test_restore_drill_unit_restores_the_newest_backup_and_records_its_outcome(host):
    """The scheduled drill, run now: the newest backup of repo1 restored into a scratch cluster in
    the unit's sandbox, every environment's rows at least the live cluster's from before the backup,
    the copy removed, the outcome in the repository's metrics file."""
    metrics = "/var/lib/prometheus/node-exporter/dw_pgbackrest_drill_repo1.prom"
    started = time.monotonic()
    result = host.run("systemctl start pgbackrest-drill-repo1.service")
    print(f"scheduled restore drill of repo1 took {time.monotonic() - started:.1f} s")
    journal = host.check_output("journalctl -u pgbackrest-drill-repo1.service -n 20 --no-pager")
    assert result.rc == 0, journal
    assert "repo1 restore drill passed: backup " in journal and "cosc471_dev " in journal, journal
    assert host.run("ls -A /var/lib/pgbackrest-drill").stdout.strip() == "", "the copy was not removed"
    text = host.check_output(f"cat {metrics}")
    assert f'dw_pgbackrest_drill_ok{{stanza="{STANZA}",repo="1"}} 1' in text, text
    for name in (
        "last_success_timestamp_seconds",
        "duration_seconds",
        "restored_size_bytes",
        "max_age_seconds",
        "scheduled_timestamp_seconds",
    ):
        assert f"dw_pgbackrest_drill_{name}{{" in text, text
    assert f'dw_pgbackrest_drill_rows{{stanza="{STANZA}",repo="1",database="cosc471_prod"}} ' in text, text
    # The live cluster's shared memory survives the unit (it runs as postgres too).
    assert host.run("runuser -u postgres -- psql -XAtc 'SELECT 1'").stdout.strip() == "1"


def test_daily_backup_unit_runs_in_its_sandbox(host):
    before = len(_info(host)["backup"])
    assert host.run("systemctl start pgbackrest-daily.service").rc == 0
    assert len(_info(host)["backup"]) == before + 1
    # The unit runs as postgres: it must not take the server's shared memory with it.
    assert host.run("runuser -u postgres -- psql -XAtc 'SELECT 1'").stdout.strip() == "1"


@pytest.mark.parametrize("repo", [1, 3])
def test_restore_drill_restores_and_counts_match(repo):
    started = time.monotonic()
    result = run_playbook("restore-drill.yml", "-e", f"restore_repo={repo}", timeout=600)
    print(f"restore drill from repo{repo} took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "restore drill passed, counts match" in result.stdout
    assert f"restore drill repo{repo} target=" in result.stdout and "cosc471_dev live=" in result.stdout
    # The drill reads its repository back before restoring from it.
    assert f"repo{repo} verified:" in result.stdout


def test_unwritable_repo2_does_not_stop_archiving_to_repo1(host):
    with unwritable(host, REPO2, "000"):
        wal = host.check_output(
            "runuser -u postgres -- psql -XAtc "
            '"SELECT pg_walfile_name(pg_current_wal_lsn()) FROM (SELECT pg_switch_wal()) s"'
        )
        host.check_output("runuser -u postgres -- psql -XAtc 'SELECT pg_switch_wal()'")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listing = host.run(f"{PGBACKREST} --repo=1 repo-ls archive/{STANZA} --recurse")
            if wal in listing.stdout:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"{wal} did not reach repo1 while repo2 was unwritable")


def test_a_failed_backup_reaches_the_journal_with_its_error_code(host):
    unit = "pgbackrest-weekly-full-repo2.service"
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    with unwritable(host, REPO2, "000"):
        assert host.run(f"systemctl start {unit}").rc != 0
    try:
        # flock hands pgBackRest's exit status through: it is pgBackRest's error code.
        code = int(host.check_output(f"systemctl show -P ExecMainStatus {unit}"))
        journal = host.check_output(f"journalctl --no-pager -o cat -u {unit} --since '{since}'")
        assert code > 0 and f"ERROR: [{code:03d}]" in journal, journal
    finally:
        host.check_output(f"systemctl reset-failed {unit}")
        # The failure's own metrics refresh read repo2 while it was unwritable.
        refresh_backup_metrics(host)


@pytest.mark.parametrize("missing", ["pgbackrest_repo3_s3_bucket", "pgbackrest_repo3_s3_key_secret"])
def test_a_missing_repo3_setting_is_named_before_anything_changes(vault, missing):
    result = run_playbook("backup.yml", "--check", "-e", json.dumps({missing: ""}), timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{missing} is empty while pgbackrest_repo3_enabled is true" in output, output[-2000:]
    assert "Render pgbackrest.conf" not in output
    assert vault["vault_pgbackrest_repo3_s3_key_secret"] not in output

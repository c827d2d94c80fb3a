"""dw-restore-drill (roles/pgbackrest/files/dw-restore-drill): the newest backup of a repository
picked from `pgbackrest info`, the space it needs, the row checks against each reference, the
metrics file (the rows and the last success kept across a failure, the schedule recorded before
the first drill), and the drills that cannot run failing loudly: no backup (an unreadable
repository), not enough space, the lock not obtained. The restore itself needs PostgreSQL and
pgBackRest: molecule's test_backup.py and test_monitoring.py run it.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import load_source

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "roles" / "pgbackrest" / "files" / "dw-restore-drill"
STANZA = "main-cluster"


drill = load_source(SCRIPT, "dw_restore_drill")


def _backup(label: str, repo: int, stop: int, size: int = 100, error: bool = False) -> dict[str, Any]:
    return {
        "label": label,
        "error": error,
        "database": {"repo-key": repo},
        "timestamp": {"start": stop - 30, "stop": stop},
        "info": {"size": size},
    }


INFO = [
    {
        "name": STANZA,
        "backup": [
            _backup("20261101-013004F", 1, 1000),
            _backup("20261101-013004F_20261102-023004I", 1, 2000),
            _backup("20261101-033004F", 2, 3000),
            _backup("20261103-023004F", 1, 4000, error=True),
        ],
    }
]


def test_the_newest_good_backup_of_the_repository() -> None:
    assert drill.newest_backup(INFO, STANZA, 1)["label"] == "20261101-013004F_20261102-023004I"
    assert drill.newest_backup(INFO, STANZA, 2)["label"] == "20261101-033004F"
    with pytest.raises(drill.DrillError, match="repo3 holds no backup"):
        drill.newest_backup(INFO, STANZA, 3)
    with pytest.raises(drill.DrillError, match="holds no backup of stanza other"):
        drill.newest_backup(INFO, "other", 1)
    unreadable = [{"name": STANZA, "repo": [{"key": 2, "status": {"code": 99, "message": "[AccessError] denied"}}]}]
    with pytest.raises(
        drill.DrillError, match=r"repo2 holds no readable backup of stanza main-cluster: \[AccessError\] denied"
    ):
        drill.newest_backup(unreadable, STANZA, 2)


def test_the_space_a_copy_needs_is_its_database_and_a_margin() -> None:
    size = 10 * 1024**3
    assert drill.space_needed(_backup("x", 1, 1, size=size)) == size + size // 10 + 256 * 1024**2


def test_the_copy_holds_every_live_row_ingested_before_the_backup() -> None:
    restored = {"cosc471_prod": (120, 100), "cosc471_dev": (5, 5)}
    assert drill.reference(restored, {"cosc471_prod": 100, "cosc471_dev": 3}, {}) == []
    assert drill.reference(restored, {"cosc471_prod": 101, "cosc471_dev": 5}, {}) == [
        "cosc471_prod: 100 rows ingested before the backup in the copy, fewer than the 101 live"
    ]


def test_on_a_repository_host_the_last_drill_is_the_lower_bound() -> None:
    restored = {"cosc471_prod": (120, 100), "cosc471_test": (0, 0)}
    assert drill.reference(restored, None, {}) == []
    assert drill.reference(restored, None, {"cosc471_prod": 120, "cosc471_test": 0}) == []
    assert drill.reference(restored, None, {"cosc471_prod": 121}) == [
        "cosc471_prod: 120 rows in the copy, fewer than the 121 of the last drill"
    ]


def test_the_metrics_round_trip_with_rows_per_database() -> None:
    values = {"ok": 1, "last_timestamp_seconds": 1795818662, "duration_seconds": 12.5, "max_age_seconds": 2764800}
    text = drill.render(STANZA, 2, values, {"cosc471_prod": 120.0, "cosc471_dev": 5.0})
    assert 'dw_pgbackrest_drill_ok{stanza="main-cluster",repo="2"} 1\n' in text
    assert 'dw_pgbackrest_drill_rows{stanza="main-cluster",repo="2",database="cosc471_dev"} 5\n' in text
    assert "dw_pgbackrest_drill_duration_seconds{" in text and " 12.500\n" in text
    assert text.count("# TYPE dw_pgbackrest_drill_rows gauge") == 1


def test_read_previous_splits_values_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "drill.prom"
    path.write_text(drill.render(STANZA, 1, {"ok": 0, "scheduled_timestamp_seconds": 5}, {"cosc471_prod": 7.0}))
    assert drill.read_previous(str(path)) == ({"ok": 0.0, "scheduled_timestamp_seconds": 5.0}, {"cosc471_prod": 7.0})
    assert drill.read_previous(str(tmp_path / "none.prom")) == ({}, {})


def test_a_success_moves_the_last_success_a_failure_does_not() -> None:
    values = {"last_success_timestamp_seconds": 10, "backup_timestamp_seconds": 5}
    ok = drill.outcome(values, {"ok": True, "size": 42, "backup_stop": 90}, 100.0, 160.25)
    assert ok == {
        "ok": 1,
        "last_timestamp_seconds": 160,
        "last_success_timestamp_seconds": 160,
        "duration_seconds": 60.25,
        "restored_size_bytes": 42,
        "backup_timestamp_seconds": 90,
    }
    failed = drill.outcome(values, {"ok": False}, 100.0, 101.0)
    assert failed["ok"] == 0 and failed["last_success_timestamp_seconds"] == 10
    assert failed["backup_timestamp_seconds"] == 5 and failed["restored_size_bytes"] == 0


def test_the_schedule_is_recorded_once_and_kept(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    metrics = tmp_path / "dw_pgbackrest_drill_repo1.prom"
    args = [f"--stanza={STANZA}", "--repo=1", f"--metrics-file={metrics}", "--max-age-seconds=2764800"]
    monkeypatch.setattr(drill.time, "time", lambda: 1795818662.0)
    assert drill.main([*args, "--record-schedule"]) == 0
    monkeypatch.setattr(drill.time, "time", lambda: 1795818662.0 + 3600)
    assert drill.main([*args, "--record-schedule"]) == 0
    assert capsys.readouterr().out.splitlines() == ["repo1: schedule recorded", "repo1: schedule unchanged"]
    text = metrics.read_text()
    assert 'dw_pgbackrest_drill_scheduled_timestamp_seconds{stanza="main-cluster",repo="1"} 1795818662\n' in text
    assert 'dw_pgbackrest_drill_max_age_seconds{stanza="main-cluster",repo="1"} 2764800\n' in text
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o644


@pytest.fixture
def fake_pgbackrest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `pgbackrest` on PATH that prints this info; the drill fails before restoring."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    info = tmp_path / "info.json"
    info.write_text(json.dumps(INFO))
    fake = bindir / "pgbackrest"
    fake.write_text(f"#!/bin/sh\ncat {info}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def _drill_args(tmp_path: Path, repo: int, *more: str) -> list[str]:
    return [
        f"--stanza={STANZA}",
        f"--repo={repo}",
        f"--dir={tmp_path / 'scratch'}",
        "--pg-bin-dir=/nonexistent",
        "--databases=cosc471_prod,cosc471_dev",
        f"--metrics-file={tmp_path / 'drill.prom'}",
        "--max-age-seconds=2764800",
        *more,
    ]


def test_a_repository_without_backup_fails_loudly(fake_pgbackrest: Path, capsys: Any) -> None:
    metrics = fake_pgbackrest / "drill.prom"
    metrics.write_text(drill.render(STANZA, 3, {"last_success_timestamp_seconds": 10}, {"cosc471_prod": 7.0}))
    assert drill.main(_drill_args(fake_pgbackrest, 3)) == 1
    assert capsys.readouterr().out == "repo3 restore drill FAILED: repo3 holds no backup of stanza main-cluster\n"
    text = metrics.read_text()
    assert 'dw_pgbackrest_drill_ok{stanza="main-cluster",repo="3"} 0\n' in text
    # The last success and the rows it found survive the failure.
    assert 'dw_pgbackrest_drill_last_success_timestamp_seconds{stanza="main-cluster",repo="3"} 10\n' in text
    assert 'dw_pgbackrest_drill_rows{stanza="main-cluster",repo="3",database="cosc471_prod"} 7\n' in text
    assert not (fake_pgbackrest / "scratch").exists()


def test_too_little_space_fails_loudly(fake_pgbackrest: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(drill.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    assert drill.main(_drill_args(fake_pgbackrest, 2)) == 1
    out = capsys.readouterr().out
    assert out.startswith("repo2 restore drill FAILED (20261101-033004F): not enough free space in "), out
    assert "1000 bytes free" in out
    assert 'dw_pgbackrest_drill_ok{stanza="main-cluster",repo="2"} 0\n' in (fake_pgbackrest / "drill.prom").read_text()


def test_a_busy_repository_fails_loudly(fake_pgbackrest: Path, capsys: Any) -> None:
    lock = fake_pgbackrest / "backup-timers.flock"
    held = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        args = _drill_args(fake_pgbackrest, 1, f"--lock-file={lock}", "--lock-wait-seconds=0.3")
        assert drill.main(args) == 1
    finally:
        os.close(held)
    assert capsys.readouterr().out == (
        f"repo1 restore drill FAILED: repository busy: a backup or verify held {lock} for over 0 s\n"
    )
    assert 'dw_pgbackrest_drill_ok{stanza="main-cluster",repo="1"} 0\n' in (fake_pgbackrest / "drill.prom").read_text()


def test_the_restore_command_line() -> None:
    args = drill.argparse.Namespace(stanza=STANZA, repo=2, dir="/var/lib/pgbackrest-drill/repo2", reset_pg_host=True)
    assert drill.pgbackrest(args) == [
        "pgbackrest",
        "--stanza=main-cluster",
        "--repo=2",
        "--log-level-console=warn",
        "--pg1-path=/var/lib/pgbackrest-drill/repo2",
        "--reset-pg1-host",
    ]

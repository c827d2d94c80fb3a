"""dw-backup-verify (roles/pgbackrest/files/dw-backup-verify): verify's summary read as it is
printed, one line of verdict, the exit status the unit and the playbook fail on, and the metrics
file of each repository (the others' left alone, the last success kept across a failure, the
schedule recorded before the first verify).

The summaries are pgBackRest's `verify --output=text --verbose` text: the healthy and the damaged
repository (one file of the full backup overwritten, as molecule's test_restore.py damages a copy)
in pgBackRest 2.45's layout, and the results block of pgBackRest's own test suite
(test/src/module/command/verifyTest.c) for statuses of more than one word. A fake `pgbackrest`
on PATH prints them; everything else is the script's own code.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import load_source

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "roles" / "pgbackrest" / "files" / "dw-backup-verify"
STANZA = "main-cluster"


dbv = load_source(SCRIPT, "dw_backup_verify")

HEALTHY = """\
stanza: main-cluster
status: ok
  archiveId: 15-1, total WAL checked: 14, total valid WAL: 14
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261127-223004F, status: valid, total files checked: 1276, total valid files: 1276
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261127-223004F_20261127-223612I, status: valid, total files checked: 37, total valid files: 37
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
"""

DAMAGED = """\
stanza: main-cluster
status: error
  archiveId: 15-1, total WAL checked: 14, total valid WAL: 14
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261127-223004F, status: invalid, total files checked: 1276, total valid files: 1275
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
"""

# pgBackRest's own test of a repository with every kind of damage (its results block).
UPSTREAM = """\
stanza: db
status: error
  archiveId: 9.4-1, total WAL checked: 0, total valid WAL: 0
  archiveId: 11-2, total WAL checked: 8, total valid WAL: 5
    missing: 0, checksum invalid: 1, size invalid: 1, other: 1
  backup: 20181119-152800F, status: manifest missing, total files checked: 0, total valid files: 0
  backup: 20181119-152810F, status: invalid, total files checked: 0, total valid files: 0
  backup: 20181119-152900F, status: invalid, total files checked: 3, total valid files: 2
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
  backup: 20181119-153000F, status: in-progress, total files checked: 0, total valid files: 0
"""


# --- The summary -----------------------------------------------------------------------------------


def test_a_healthy_repository_has_no_problem() -> None:
    found = dbv.summary(HEALTHY)
    assert found["status"] == "ok" and found["problems"] == []
    assert [b["label"] for b in found["backups"]] == ["20261127-223004F", "20261127-223004F_20261127-223612I"]
    assert dbv.verdict(1, found) == "repo1 verified: 2 backups (1313 files) and 14 WAL segments, all valid"


def test_a_damaged_file_is_named_though_the_exit_status_hides_it() -> None:
    found = dbv.summary(DAMAGED)
    assert found["problems"] == [
        "stanza status is error",
        "backup 20261127-223004F is invalid: 1275 of 1276 files valid",
    ]
    assert dbv.verdict(2, found) == (
        "repo2: stanza status is error; backup 20261127-223004F is invalid: 1275 of 1276 files valid"
    )


def test_every_kind_of_damage_and_statuses_of_several_words() -> None:
    assert dbv.summary(UPSTREAM)["problems"] == [
        "stanza status is error",
        "backup 20181119-152800F is manifest missing: 0 of 0 files valid",
        "backup 20181119-152810F is invalid: 0 of 0 files valid",
        "backup 20181119-152900F is invalid: 2 of 3 files valid",
        "backup 20181119-153000F is in-progress: 0 of 0 files valid",
        "WAL archive 11-2: 5 of 8 segments valid",
    ]


def test_no_summary_and_no_backup_are_problems() -> None:
    assert dbv.summary("")["problems"] == [
        "verify printed no summary (needs pgBackRest 2.45 or newer with --output=text --verbose)",
        "no backup was checked",
    ]
    no_backup = HEALTHY.split("  backup:")[0]
    assert dbv.summary(no_backup)["problems"] == ["no backup was checked"]


def test_the_command_line() -> None:
    assert dbv.verify_argv(STANZA, 2) == [
        "pgbackrest",
        "--stanza=main-cluster",
        "--repo=2",
        "--output=text",
        "--verbose",
        "--log-level-console=warn",
        "verify",
    ]
    # A copy's path; root runs pgbackrest as postgres.
    argv = dbv.verify_argv(STANZA, 1, "/srv/copy", as_root=True)
    assert argv[:4] == ["runuser", "-u", "postgres", "--"] and "--repo1-path=/srv/copy" in argv
    assert argv[-1] == "verify"


# --- Running it: a fake pgbackrest prints the summary -------------------------------------------------


@pytest.fixture
def fake_pgbackrest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sets what `pgbackrest` prints and exits with; returns the file of its arguments."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    binary = bindir / "pgbackrest"
    binary.write_text(
        '#!/bin/sh\necho "$@" >> "$FAKE_ARGS"\ncat "$FAKE_OUTPUT"\necho "$FAKE_STDERR" >&2\nexit "$FAKE_RC"\n'
    )
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ARGS", str(tmp_path / "args"))
    monkeypatch.setattr(dbv.os, "geteuid", lambda: 108)  # postgres, as in the unit

    def prints(text: str, rc: int = 0, stderr: str = "") -> Path:
        (tmp_path / "output").write_text(text)
        monkeypatch.setenv("FAKE_OUTPUT", str(tmp_path / "output"))
        monkeypatch.setenv("FAKE_RC", str(rc))
        monkeypatch.setenv("FAKE_STDERR", stderr)
        return tmp_path / "args"

    return prints


def _values(directory: Path, repo: int) -> dict[str, float]:
    return dbv.read_previous(str(directory / f"dw_pgbackrest_verify_repo{repo}.prom"))


def _verify(directory: Path, repo: int, *extra: str) -> int:
    """The script as the role runs it: the repository's file in the textfile directory."""
    metrics = directory / f"dw_pgbackrest_verify_repo{repo}.prom"
    return dbv.main([f"--stanza={STANZA}", f"--repo={repo}", f"--metrics-file={metrics}", *extra])


def test_a_success_writes_the_repositorys_metrics(tmp_path: Path, fake_pgbackrest: Any, capsys: Any) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    args = fake_pgbackrest(HEALTHY)
    assert _verify(metrics, 1, "--max-age-seconds=691200") == 0
    assert capsys.readouterr().out.strip() == ("repo1 verified: 2 backups (1313 files) and 14 WAL segments, all valid")
    assert "--repo=1" in args.read_text()
    values = _values(metrics, 1)
    assert values["dw_pgbackrest_verify_ok"] == 1
    assert (
        values["dw_pgbackrest_verify_last_success_timestamp_seconds"]
        == values["dw_pgbackrest_verify_last_timestamp_seconds"]
    )
    assert 0 <= values["dw_pgbackrest_verify_duration_seconds"] < 60
    assert values["dw_pgbackrest_verify_max_age_seconds"] == 691200
    text = (metrics / "dw_pgbackrest_verify_repo1.prom").read_text()
    assert 'dw_pgbackrest_verify_ok{stanza="main-cluster",repo="1"} 1\n' in text
    assert text.count("# TYPE ") == len(values) == 6
    assert oct((metrics / "dw_pgbackrest_verify_repo1.prom").stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in metrics.iterdir()] == ["dw_pgbackrest_verify_repo1.prom"]  # no temporary left


def test_a_failure_keeps_the_last_success_and_the_other_repositories(
    tmp_path: Path, fake_pgbackrest: Any, capsys: Any
) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    fake_pgbackrest(HEALTHY)
    assert _verify(metrics, 1, "--max-age-seconds=691200") == 0 and _verify(metrics, 2) == 0
    before = _values(metrics, 1)
    repo2 = (metrics / "dw_pgbackrest_verify_repo2.prom").read_text()
    capsys.readouterr()
    fake_pgbackrest(DAMAGED)
    assert _verify(metrics, 1) == 1
    assert capsys.readouterr().out.startswith("repo1: stanza status is error; backup 20261127-223004F is invalid")
    after = _values(metrics, 1)
    assert after["dw_pgbackrest_verify_ok"] == 0
    assert after["dw_pgbackrest_verify_last_timestamp_seconds"] >= before["dw_pgbackrest_verify_last_timestamp_seconds"]
    for kept in ("last_success_timestamp_seconds", "max_age_seconds", "scheduled_timestamp_seconds"):
        assert after[f"dw_pgbackrest_verify_{kept}"] == before[f"dw_pgbackrest_verify_{kept}"], kept
    assert (metrics / "dw_pgbackrest_verify_repo2.prom").read_text() == repo2


def test_pgbackrest_failing_is_a_problem(tmp_path: Path, fake_pgbackrest: Any, capsys: Any) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    fake_pgbackrest("", rc=56, stderr="ERROR: [056]: unable to find primary cluster")
    assert _verify(metrics, 2) == 1
    assert capsys.readouterr().out.startswith(
        "repo2: pgbackrest verify exited 56: ERROR: [056]: unable to find primary cluster; verify printed no summary"
    )
    values = _values(metrics, 2)
    assert (
        values["dw_pgbackrest_verify_ok"] == 0 and "dw_pgbackrest_verify_last_success_timestamp_seconds" not in values
    )


def test_a_copy_is_verified_without_touching_the_repositorys_metrics(
    tmp_path: Path, fake_pgbackrest: Any, capsys: Any
) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    args = fake_pgbackrest(DAMAGED)
    assert _verify(metrics, 1, "--path=/var/tmp/repo1-copy") == 1
    assert "--repo1-path=/var/tmp/repo1-copy" in args.read_text()
    assert "files valid" in capsys.readouterr().out
    assert list(metrics.iterdir()) == []


def test_no_textfile_directory_writes_nothing(tmp_path: Path, fake_pgbackrest: Any) -> None:
    fake_pgbackrest(HEALTHY)
    assert _verify(tmp_path / "missing", 1) == 0
    assert not (tmp_path / "missing").exists()


def test_the_schedule_is_recorded_once_and_kept(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    monkeypatch.setattr(dbv.time, "time", lambda: 1795818662.0)
    assert _verify(metrics, 3, "--max-age-seconds=691200", "--record-schedule") == 0
    monkeypatch.setattr(dbv.time, "time", lambda: 1795818662.0 + 3600)
    assert _verify(metrics, 3, "--max-age-seconds=691200", "--record-schedule") == 0
    assert capsys.readouterr().out.splitlines() == ["repo3: schedule recorded", "repo3: schedule unchanged"]
    assert _values(metrics, 3) == {
        "dw_pgbackrest_verify_max_age_seconds": 691200,
        "dw_pgbackrest_verify_scheduled_timestamp_seconds": 1795818662,
    }
    # A new period changes the limit, not since when the repository is scheduled.
    assert _verify(metrics, 3, "--max-age-seconds=302400", "--record-schedule") == 0
    assert _values(metrics, 3)["dw_pgbackrest_verify_scheduled_timestamp_seconds"] == 1795818662
    assert _values(metrics, 3)["dw_pgbackrest_verify_max_age_seconds"] == 302400


def test_dw_status_reads_what_the_script_writes(tmp_path: Path, fake_pgbackrest: Any) -> None:
    from test_dw_status import dws

    metrics = tmp_path / "textfile"
    metrics.mkdir()
    fake_pgbackrest(HEALTHY)
    assert _verify(metrics, 2, "--max-age-seconds=691200") == 0
    text = (metrics / "dw_pgbackrest_verify_repo2.prom").read_text()
    names = {name for name, labels, _ in dws.parse_metrics(text) if labels == {"stanza": STANZA, "repo": "2"}}
    assert names == set(dbv.HELP)

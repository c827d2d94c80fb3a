"""pgBackRest across the Patroni cluster: every member archives to ha-backup1, the repository host,
which backs up whichever member leads; after a switchover, archiving and backups go on from the
new leader without a converge."""

from __future__ import annotations

import json

import testinfra
from conftest import leader, run_playbook, wait_healthy

PGBACKREST = "runuser -u postgres -- pgbackrest --stanza=main-cluster"


def _repository():
    return testinfra.get_host("podman://ha-backup1")


def _backups(host) -> list[dict]:
    return json.loads(host.check_output(f"{PGBACKREST} info --output=json"))[0]["backup"]


def test_every_repository_holds_a_full_backup():
    repos = {b["database"]["repo-key"] for b in _backups(_repository()) if b["type"] == "full"}
    assert repos == {1, 2}, repos


def test_archiving_and_backups_follow_a_switchover():
    repository = _repository()
    before = leader(wait_healthy())
    repository.check_output(f"{PGBACKREST} check")
    switched = run_playbook("switchover.yml")
    assert switched.returncode == 0, switched.stdout[-3000:]
    after = leader(wait_healthy())
    assert after != before
    # check switches WAL on the member that now leads and waits until both repositories have it.
    repository.check_output(f"{PGBACKREST} check")
    count = len(_backups(repository))
    repository.check_output(f"{PGBACKREST} --repo=1 --type=incr backup")
    backups = _backups(repository)
    # Only a primary can start a backup (no backup-standby here): it came from the new leader.
    assert len(backups) == count + 1 and backups[-1]["type"] == "incr", backups[-1]

"""pgBackRest across the Patroni cluster, with ha-backup1 as its dedicated repository host: every
member archives to it, its own timers back up whichever member leads (over the members' TLS
servers, which only the repository host reaches), its scheduled drill restores there; after a
switchover, archiving and backups go on from the new leader without a converge."""

from __future__ import annotations

import time

from conftest import (
    MEMBERS,
    PGBACKREST,
    STANZA,
    backups,
    leader,
    leading,
    member,
    reached,
    run_playbook,
    wait_healthy,
)
from support import role_default

TIMER = "pgbackrest-daily.timer"
# A runtime drop-in (under /run, gone with a reboot) that moves the timer's calendar to a moment a
# few seconds ahead: the installed timer itself elapses and starts its service, as it will at 02:30.
TIMER_DROP_IN = f"/run/systemd/system/{TIMER}.d/50-test-now.conf"
# pgBackRest's TLS server, on every member and on the repository host.
TLS_SERVER_PORT = role_default("pgbackrest", "pgbackrest_tls_server_port")


def test_every_repository_holds_a_full_backup(repository):
    repos = {b["database"]["repo-key"] for b in backups(repository) if b["type"] == "full"}
    assert repos == {1, 2}, repos


def test_the_backup_timers_run_on_the_repository_host(repository):
    assert repository.service(TIMER).is_enabled and repository.service(TIMER).is_running
    for name in MEMBERS:
        assert not member(name).file(f"/etc/systemd/system/{TIMER}").exists, name
    before = {b["label"] for b in backups(repository)}
    service = "pgbackrest-daily.service"

    def show(unit: str, prop: str) -> str:
        return repository.check_output(f"systemctl show -P {prop} {unit}")

    triggered_before, run_before = show(TIMER, "LastTriggerUSec"), show(service, "InvocationID")
    at = repository.check_output("date -d '+10 seconds' '+%Y-%m-%d %H:%M:%S'")
    repository.check_output(
        f"mkdir -p $(dirname {TIMER_DROP_IN}) && printf '%s\\n' '[Timer]' 'OnCalendar=' "
        f"'OnCalendar={at}' 'RandomizedDelaySec=0' 'AccuracySec=1s' > {TIMER_DROP_IN}"
    )
    try:
        repository.check_output(f"systemctl daemon-reload && systemctl restart {TIMER}")
        # The timer elapses and starts a new run of its service (a new invocation id), which runs
        # in its sandbox, as postgres, on a host without PostgreSQL, through the leader's TLS server.
        deadline = time.monotonic() + 300
        while show(service, "InvocationID") == run_before or show(service, "ActiveState") not in ("inactive", "failed"):
            assert time.monotonic() < deadline, "the timer did not run its backup to the end within 300 s"
            time.sleep(1)
        triggered = show(TIMER, "LastTriggerUSec")
    finally:
        repository.check_output(f"rm -f {TIMER_DROP_IN} && systemctl daemon-reload && systemctl restart {TIMER}")
    assert triggered != triggered_before, (triggered_before, triggered)
    assert show(service, "Result") == "success"
    new = [b for b in backups(repository) if b["label"] not in before]
    assert [(b["type"], b["database"]["repo-key"]) for b in new] == [("incr", 1)], new
    # The schedule is the inventory's again.
    assert "02:30" in repository.check_output(f"systemctl show -P TimersCalendar {TIMER}")


def test_check_passes_from_the_leader_and_the_repository_host(repository):
    for where, host in (("leader", leading()), ("repository host", repository)):
        result = host.run(f"{PGBACKREST} check")
        assert result.rc == 0, (where, result.stderr)


def test_only_the_members_and_the_repository_host_reach_each_others_tls_server(api, repository, address):
    servers = {(address[name], TLS_SERVER_PORT) for name in MEMBERS}
    repository_server = (address["ha-backup1"], TLS_SERVER_PORT)
    # The repository host backs up through each member's server; each member archives through its.
    assert reached(repository, list(servers)) == servers
    for name in MEMBERS:
        assert reached(member(name), [repository_server]) == {repository_server}, name
    assert reached(api, [*servers, repository_server], timeout=3) == set()


def test_the_scheduled_drill_restores_on_the_repository_host(repository):
    # The timer's unit on the dedicated repository host: the newest backup restored into a scratch
    # copy there (pg1 reset to local), counted, removed; its outcome in the node exporter's metrics.
    unit = "pgbackrest-drill-repo1.service"
    started = repository.run(f"systemctl start {unit}")
    journal = repository.check_output(f"journalctl -u {unit} -n 5 --no-pager -o cat")
    assert started.rc == 0 and "repo1 restore drill passed" in journal, journal
    metrics = repository.check_output("cat /var/lib/prometheus/node-exporter/dw_pgbackrest_drill_repo1.prom")
    assert f'dw_pgbackrest_drill_ok{{stanza="{STANZA}",repo="1"}} 1' in metrics, metrics
    assert repository.run("ls -A /var/lib/pgbackrest-drill").stdout.strip() == "", "the copy was not removed"


def test_archiving_and_backups_follow_a_switchover(repository):
    before = leader(wait_healthy())
    repository.check_output(f"{PGBACKREST} check")
    switched = run_playbook("switchover.yml")
    assert switched.returncode == 0, switched.stdout[-3000:]
    after = leader(wait_healthy())
    assert after != before
    # check switches WAL on the member that now leads and waits until both repositories have it.
    repository.check_output(f"{PGBACKREST} check")
    count = len(backups(repository))
    repository.check_output(f"{PGBACKREST} --repo=1 --type=incr backup")
    taken = backups(repository)
    # Only a primary can start a backup (no backup-standby here): it came from the new leader.
    assert len(taken) == count + 1 and taken[-1]["type"] == "incr", taken[-1]

"""backup1 as pgBackRest's dedicated repository host, and the server-loss drill.

The backups run on backup1 from its own timers, over pgBackRest's TLS server on db1; WAL goes from
db1 to backup1. The drill then destroys db1 (container and data), builds a fresh one exactly as the
scenario does, converges it and restores it from backup1, and measures what that cost: the time
from the fresh host to three ready APIs, and the acknowledged records that are gone, each of which
must have been acknowledged within archive_timeout of the loss.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import yaml
from conftest import SCENARIO, api_key, psql, run_playbook, start_load, stop_load
from support import authorize_deploy_key

PGBACKREST = "runuser -u postgres -- pgbackrest --stanza=main-cluster"
ARCHIVE_TIMEOUT = yaml.safe_load((SCENARIO / "group_vars" / "db_servers.yml").read_text())["postgresql_archive_timeout"]
# Beyond archive_timeout: the push of the closed segment to backup1 (archive-async) and the time
# between a commit and the client reading its 200.
SLACK = 10
WORK = "/run/server-loss-load"


def _backups(host) -> list[dict]:
    info = json.loads(host.check_output(f"{PGBACKREST} info --output=json"))
    return info[0]["backup"]


TIMER = "pgbackrest-daily.timer"
# A runtime drop-in (under /run, gone with a reboot) that moves the timer's calendar to a moment a
# few seconds ahead: the installed timer itself elapses and starts its service, as it will at 02:30.
TIMER_DROP_IN = f"/run/systemd/system/{TIMER}.d/50-test-now.conf"


def test_the_backup_timers_run_on_the_repository_host(backup1, db1):
    assert backup1.service(TIMER).is_enabled
    assert backup1.service(TIMER).is_running
    assert not db1.file(f"/etc/systemd/system/{TIMER}").exists
    assert not db1.file("/var/lib/pgbackrest-local").exists
    before = {b["label"] for b in _backups(backup1)}
    service = "pgbackrest-daily.service"

    def show(unit: str, prop: str) -> str:
        return backup1.check_output(f"systemctl show -P {prop} {unit}")

    triggered_before, run_before = show(TIMER, "LastTriggerUSec"), show(service, "InvocationID")
    at = backup1.check_output("date -d '+10 seconds' '+%Y-%m-%d %H:%M:%S'")
    backup1.check_output(
        f"mkdir -p $(dirname {TIMER_DROP_IN}) && printf '%s\\n' '[Timer]' 'OnCalendar=' "
        f"'OnCalendar={at}' 'RandomizedDelaySec=0' 'AccuracySec=1s' > {TIMER_DROP_IN}"
    )
    try:
        backup1.check_output(f"systemctl daemon-reload && systemctl restart {TIMER}")
        # The timer elapses and starts a new run of its service (a new invocation id), which runs
        # in its sandbox, as postgres, on a host without PostgreSQL, through db1's TLS server.
        deadline = time.monotonic() + 300
        while show(service, "InvocationID") == run_before or show(service, "ActiveState") not in ("inactive", "failed"):
            assert time.monotonic() < deadline, "the timer did not run its backup to the end within 300 s"
            time.sleep(1)
        triggered = show(TIMER, "LastTriggerUSec")
    finally:
        backup1.check_output(f"rm -f {TIMER_DROP_IN} && systemctl daemon-reload && systemctl restart {TIMER}")
    assert triggered != triggered_before, (triggered_before, triggered)
    assert show(service, "Result") == "success"
    new = [b for b in _backups(backup1) if b["label"] not in before]
    assert [(b["type"], b["database"]["repo-key"]) for b in new] == [("incr", 1)], new
    # The schedule is the inventory's again.
    assert "02:30" in backup1.check_output(f"systemctl show -P TimersCalendar {TIMER}")


def test_check_passes_from_both_sides(db1, backup1):
    for host in (db1, backup1):
        result = host.run(f"{PGBACKREST} check")
        assert result.rc == 0, (host.backend.hostname, result.stderr)


def test_only_the_two_backup_hosts_reach_each_others_tls_server(db1, api1, backup1, address):
    def reaches(source, target: str) -> bool:
        return source.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address[target]}/8432'").rc == 0

    assert reaches(backup1, "db1") and reaches(db1, "backup1")
    assert not reaches(api1, "db1") and not reaches(api1, "backup1")


def test_the_restore_drill_runs_on_the_database_host_from_the_repository_host():
    result = run_playbook("restore-drill.yml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # verify ran where repo1 lives (delegated to backup1), the restore on db1 pulled from it.
    assert "repo1 verified:" in output and "restore drill passed, counts match" in output, output[-4000:]


def test_the_scheduled_drill_restores_on_the_repository_host(backup1):
    # The timer's unit on the dedicated repository host: the newest backup restored into a scratch
    # copy there (pg1 reset to local), counted, removed; its outcome in the node exporter's metrics.
    unit = "pgbackrest-drill-repo1.service"
    started = backup1.run(f"systemctl start {unit}")
    journal = backup1.check_output(f"journalctl -u {unit} -n 5 --no-pager -o cat")
    assert started.rc == 0 and "repo1 restore drill passed" in journal, journal
    metrics = backup1.check_output("cat /var/lib/prometheus/node-exporter/dw_pgbackrest_drill_repo1.prom")
    assert 'dw_pgbackrest_drill_ok{stanza="main-cluster",repo="1"} 1' in metrics, metrics
    assert backup1.run("ls -A /var/lib/pgbackrest-drill").stdout.strip() == "", "the copy was not removed"


def _fresh_db1() -> None:
    """db1 again, with the options molecule gives it (molecule.yml), and no data."""
    platforms = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["platforms"]
    platform = next(p for p in platforms if p["name"] == "db1")
    argv = ["podman", "run", "-d", "--name", "db1", "--hostname", "db1", f"--systemd={platform['systemd']}"]
    argv += [f"--cap-add={cap}" for cap in platform.get("capabilities", [])]
    argv += [f"--add-host={name}:{ip}" for name, ip in platform["etc_hosts"].items()]
    argv += [*platform.get("extra_opts", []), platform["image"], platform["command"]]
    subprocess.run(argv, check=True, capture_output=True, text=True)
    for _ in range(60):
        state = subprocess.run(
            ["podman", "exec", "db1", "systemctl", "is-system-running"], capture_output=True, text=True
        )
        if state.stdout.strip() in ("running", "degraded"):
            authorize_deploy_key("db1")
            return
        time.sleep(1)
    raise AssertionError(f"db1's systemd did not come up: {state.stdout} {state.stderr}")


def test_server_loss_drill(client1, api1, db1, backup1, environments, vault):
    symbol = f"LOSS{uuid.uuid4().hex[:6].upper()}"
    start_load(
        client1,
        WORK,
        [
            {
                "name": e.name,
                "url": f"https://api1:{e.edge_port}/ingest/market-data/",
                "key": api_key(vault, e.name),
                "symbol": symbol,
                "keepalive": True,
                "pause": 0.1,
                "ack_times": True,
            }
            for e in environments
        ],
    )
    # Long enough for several archive_timeout switches: the older records are on backup1.
    time.sleep(2 * ARCHIVE_TIMEOUT + 10)

    killed_at = time.time()
    # SIGKILL to the container's init: the server dies at once, as with lost hardware (podman rm -f
    # alone would stop it gracefully, and PostgreSQL would archive on its way down).
    subprocess.run(["podman", "kill", "--signal", "KILL", "db1"], check=True, capture_output=True)
    subprocess.run(["podman", "rm", "-f", "db1"], check=True, capture_output=True)
    result = stop_load(client1, WORK, timeout=60)

    fresh_at = time.monotonic()
    _fresh_db1()
    converge = run_playbook("../site.yml", "--limit", "all:!clients", "--skip-tags", "pgbackrest_stanza", timeout=1500)
    assert converge.returncode == 0, converge.stdout[-4000:]
    converged = time.monotonic() - fresh_at
    print(converge.stdout[converge.stdout.rfind("PLAY RECAP") :])
    restore = run_playbook("restore.yml", "-e", "restore_confirm=db1")
    assert restore.returncode == 0, restore.stdout[-4000:]
    recovery = time.monotonic() - fresh_at

    for env in environments:
        assert api1.run(f"curl -fsS -o /dev/null http://127.0.0.1:{env.api_port}/ready").rc == 0, env.name
    assert api1.service("market-data-simulator.timer").is_running
    assert backup1.run(f"{PGBACKREST} check").rc == 0

    report = []
    for env in environments:
        acked = {number: at for number, at in result[env.name]["ack_times"]}
        stored = {
            int(v)
            for v in psql(
                db1, f"SELECT volume FROM staging.market_data WHERE symbol = '{symbol}'", env.database
            ).split()
        }
        lost = sorted(set(acked) - stored)
        oldest_lost_age = killed_at - acked[lost[0]] if lost else 0.0
        report.append(
            f"{env.name}: acked={len(acked)} stored={len(stored & set(acked))} lost={len(lost)} "
            f"(oldest {oldest_lost_age:.1f} s before the loss)"
        )
        assert len(acked) > 100, (env.name, result[env.name]["sent"], result[env.name]["failures"][:3])
        # Everything acknowledged before the last archive_timeout(+slack) survived.
        assert oldest_lost_age <= ARCHIVE_TIMEOUT + SLACK, report[-1]
    print(
        f"server-loss drill: fresh db1 to three ready APIs in {recovery:.0f} s (converge {converged:.0f} s, "
        f"restore {recovery - converged:.0f} s); archive_timeout={ARCHIVE_TIMEOUT} s; " + "; ".join(report)
    )

    # The restored cluster closes segments by archive_timeout at once, not only after its first
    # timed checkpoint (up to checkpoint_timeout later; restore.yml's CHECKPOINT sees to it): a write
    # now is in the repository within archive_timeout, so a second loss costs no more than the first.
    segment = psql(db1, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    psql(
        db1,
        "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
        f"VALUES ('{symbol}', now(), 1, 1, 1, 1, 0, 1)",
        environments[0].database,
    )
    written_at = time.monotonic()
    while psql(db1, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
        assert time.monotonic() - written_at < ARCHIVE_TIMEOUT + SLACK, f"{segment} not archived after the restore"
        time.sleep(1)
    print(f"after the restore, a write was archived in {time.monotonic() - written_at:.1f} s")

    # The simulator runs again: its service posts to dev when started.
    api1.check_output("systemctl start market-data-simulator.service")
    assert api1.check_output("systemctl show -P Result market-data-simulator.service") == "success"

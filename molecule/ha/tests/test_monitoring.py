"""Monitoring knows the cluster: Prometheus on ha-backup1 (the monitoring host) scrapes every
member's Patroni REST API and etcd over TLS with its own client certificate, sees one primary, and a
stopped member's DwPatroniMemberDown reaches Alertmanager and clears once it is back; dw-status
there lists the members with their roles. The scenario's monitoring_servers group_vars scrape and
evaluate every 2 s and fire after 10 s, so each wait is seconds. (DwPatroniFailover at a real
failover: test_patroni.py's unplanned failover.)
"""

from __future__ import annotations

import json
import time

from conftest import (
    MEMBERS,
    MONITOR,
    SERVERS,
    STANZA,
    alertmanager_alerts,
    cluster_view,
    leader,
    member,
    prometheus_query,
    reached,
    record,
    wait_for,
    wait_healthy,
)
from support import role_default, unwritable

NODE_EXPORTER_PORT = role_default("node_exporter", "node_exporter_port")
# The alerts a healthy cluster must not have firing.
CLUSTER_ALERTS = "DwPatroniNoLeader|DwPatroniMemberDown|DwPatroniNoSyncStandby|DwPatroniReplicationLag|DwEtcdMemberDown"


def _hosts(promql: str) -> set[str]:
    return {r["metric"]["host"] for r in prometheus_query(promql)}


def test_every_member_is_scraped_and_one_is_primary():
    view = wait_healthy()
    members = set(MEMBERS)
    wait_for(lambda: _hosts('up{job="patroni"} == 1') == members, 60, "every member's Patroni target up")
    wait_for(lambda: _hosts('up{job="etcd"} == 1') == members, 60, "every etcd member up")
    primaries = wait_for(
        lambda: (found := prometheus_query('patroni_primary{job="patroni"} == 1')) and len(found) == 1 and found,
        60,
        "exactly one primary in Prometheus",
    )
    assert primaries[0]["metric"]["host"] == leader(view), (primaries, view)
    wait_for(
        lambda: not prometheus_query(f'ALERTS{{alertname=~"{CLUSTER_ALERTS}", alertstate="firing"}}'),
        60,
        "no cluster alert firing on a healthy cluster",
    )


def test_the_monitoring_host_reaches_the_rest_api_and_etcd_clients_not_the_peers():
    monitor = member(MONITOR)
    target = MEMBERS[0]

    def reaches(port: int) -> bool:
        return monitor.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{target}/{port}'").rc == 0

    assert reaches(8008) and reaches(2379)
    assert not reaches(2380)


def test_a_stopped_member_alerts_in_alertmanager_and_clears_when_back():
    view = wait_healthy()
    # The asynchronous replica: the leader keeps its synchronous standby meanwhile.
    stopped = next(m["Member"] for m in view if m["Role"] == "Replica")
    host = member(stopped)

    def alerted() -> list[dict]:
        return [a for a in alertmanager_alerts("DwPatroniMemberDown") if a["labels"].get("host") == stopped]

    wait_for(lambda: not alerted(), 60, f"no DwPatroniMemberDown for {stopped} before the stop")
    host.check_output("systemctl stop patroni")
    stopped_at = time.monotonic()
    try:
        alert = wait_for(alerted, 90, f"DwPatroniMemberDown for {stopped} in Alertmanager")[0]
        fired_s = time.monotonic() - stopped_at
        assert alert["labels"]["severity"] == "critical", alert
        assert stopped in alert["annotations"]["summary"], alert
    finally:
        host.check_output("systemctl start patroni")
    started_at = time.monotonic()
    wait_for(lambda: not alerted(), 120, f"DwPatroniMemberDown for {stopped} to clear in Alertmanager")
    record(
        {
            "test": "member_down_alert",
            "member": stopped,
            "stop_to_alertmanager_s": round(fired_s, 1),
            "start_to_resolved_s": round(time.monotonic() - started_at, 1),
        }
    )
    wait_healthy()


def test_dw_status_lists_the_members_with_their_roles():
    view = wait_healthy()
    names = {"Leader": "leader", "Sync Standby": "sync standby", "Replica": "replica"}
    roles = {m["Member"]: names[m["Role"]] for m in view}
    monitor = member(MONITOR)

    def status() -> dict | None:
        out = monitor.run("dw-status --json")
        patroni = json.loads(out.stdout)["sections"].get("patroni") if out.stdout.strip() else None
        # Prometheus' view follows patronictl's within a scrape or two.
        return patroni if patroni and {m["name"]: m["role"] for m in patroni["members"]} == roles else None

    patroni = wait_for(status, 30, "dw-status listing the members with patronictl's roles")
    assert patroni["leader"] == leader(view) and patroni["ok"], patroni
    assert all(m["state"] == "running" and m["timeline"] == patroni["timeline"] for m in patroni["members"]), patroni
    text = monitor.run("dw-status").stdout
    for name, role in roles.items():
        assert f"member {name}: {role}, running" in text, text
    assert cluster_view()  # the cluster is still whole for the next module


def test_every_server_is_scraped_from_the_monitoring_host():
    wait_for(lambda: _hosts('up{job="node"} == 1') >= set(SERVERS), 60, "every server's node exporter up")


def test_only_the_monitoring_host_reaches_the_node_exporters(api, client, address):
    exporters = {(address[name], NODE_EXPORTER_PORT) for name in (*MEMBERS, "ha-api1")}
    assert reached(member(MONITOR), list(exporters)) == exporters
    assert reached(client, list(exporters)) == set()
    assert reached(api, [(address[MEMBERS[0]], NODE_EXPORTER_PORT)]) == set()
    assert reached(member(MEMBERS[0]), [(address["ha-api1"], NODE_EXPORTER_PORT)]) == set()


def test_the_repository_hosts_backups_reach_prometheus(repository):
    repository.check_output("systemctl start dw-backup-metrics.service")
    ends = wait_for(
        lambda: prometheus_query(
            f'max by (repo) (dw_pgbackrest_backup_last_end_timestamp_seconds{{host="{MONITOR}"}})'
        ),
        60,
        "the repository host's backup end times in Prometheus",
    )
    assert {r["metric"]["repo"] for r in ends} >= {"1", "2"}, ends
    assert all(0 < time.time() - float(r["value"][1]) < 86400 for r in ends), ends


def test_a_failed_backup_on_the_repository_host_reaches_alertmanager_and_clears(repository):
    # The stanza's backup directory in repo1: a backup writes its new set there.
    backups = f"{role_default('pgbackrest', 'pgbackrest_repo1_path')}/backup/{STANZA}"
    unit = "pgbackrest-daily.service"

    def alerted() -> list[dict]:
        return [a for a in alertmanager_alerts("DwBackupUnitFailed") if a["labels"].get("host") == MONITOR]

    with unwritable(repository, backups):
        assert repository.run(f"systemctl start {unit}").rc != 0
        alert = wait_for(alerted, 90, "DwBackupUnitFailed for the repository host in Alertmanager")[0]
        assert alert["labels"]["name"] == unit, alert
    # The repaired run clears it.
    assert repository.run(f"systemctl start {unit}").rc == 0
    wait_for(lambda: not alerted(), 90, "DwBackupUnitFailed to clear in Alertmanager")
    repository.check_output("systemctl start dw-backup-metrics.service")

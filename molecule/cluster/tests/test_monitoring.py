"""Monitoring across hosts: Prometheus on db1 scrapes every server's node exporter over the
network (the firewall lets only db1 in) with basic auth, so the repository host's backup metrics and a failed
backup unit there reach it and fire an alert."""

from __future__ import annotations

import functools
import json
import shlex
import time
import urllib.parse

import pytest
from support import read_vault, role_default

PROMETHEUS = "http://127.0.0.1:9090"
NODE_EXPORTER_PORT = 9100


@functools.cache
def _auth() -> str:
    """curl's -u for Prometheus: the monitoring role's user, the vault's monitoring password."""
    user = role_default("monitoring", "monitoring_web_username")
    return f"-u {shlex.quote(user + ':' + read_vault()['vault_monitoring_web_password'])}"


def _query(db1, promql: str) -> list[dict]:
    url = f"{PROMETHEUS}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    return json.loads(db1.check_output(f"curl -fsS {_auth()} {shlex.quote(url)}"))["data"]["result"]


def _wait_for(what: str, probe, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(1)
    return found


def _connects(source, target_address: str, port: int) -> bool:
    return source.run(f"timeout 4 bash -c '</dev/tcp/{target_address}/{port}'").rc == 0


def test_every_server_is_scraped_from_the_monitoring_host(db1):
    up = _wait_for(
        "every node exporter up",
        lambda: {r["metric"]["host"] for r in _query(db1, 'up{job="node"} == 1')} >= {"db1", "api1", "backup1"} or None,
    )
    assert up


def test_only_the_monitoring_host_reaches_the_node_exporters(db1, api1, backup1, client1, address):
    for name in ("api1", "backup1"):
        assert _connects(db1, address[name], NODE_EXPORTER_PORT), name
        assert not _connects(client1, address[name], NODE_EXPORTER_PORT), name
    assert not _connects(api1, address["backup1"], NODE_EXPORTER_PORT)
    assert not _connects(backup1, address["api1"], NODE_EXPORTER_PORT)


def test_the_repository_hosts_backups_reach_prometheus(db1, backup1):
    backup1.check_output("systemctl start dw-backup-metrics.service")
    ends = _wait_for(
        "backup1's backup end times in Prometheus",
        lambda: _query(db1, 'max by (repo) (dw_pgbackrest_backup_last_end_timestamp_seconds{host="backup1"})'),
    )
    assert {r["metric"]["repo"] for r in ends} >= {"1", "2"}, ends
    assert all(0 < time.time() - float(r["value"][1]) < 86400 for r in ends), ends


def test_a_failed_backup_on_the_repository_host_fires_an_alert(db1, backup1):
    # The stanza's backup directory in repo1: a backup writes its new set there.
    backups = "/var/lib/pgbackrest-local/backup/main-cluster"
    mode = backup1.check_output(f"stat -c %a {backups}")
    unit = "pgbackrest-daily.service"
    backup1.check_output(f"chmod 0500 {backups}")
    try:
        assert backup1.run(f"systemctl start {unit}").rc != 0
        firing = _wait_for(
            "DwBackupUnitFailed for backup1 firing in Prometheus",
            lambda: _query(db1, 'ALERTS{alertname="DwBackupUnitFailed", alertstate="firing", host="backup1"}'),
        )
        assert firing[0]["metric"]["name"] == unit, firing
    finally:
        backup1.check_output(f"chmod {mode} {backups}")
    # The repaired run clears it.
    assert backup1.run(f"systemctl start {unit}").rc == 0
    _wait_for(
        "DwBackupUnitFailed to clear",
        lambda: not _query(db1, 'ALERTS{alertname="DwBackupUnitFailed", host="backup1"}'),
    )
    backup1.check_output("systemctl start dw-backup-metrics.service")

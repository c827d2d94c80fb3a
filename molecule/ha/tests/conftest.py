"""The ha scenario's hosts, and how the tests read the Patroni cluster.

The production-shaped layout: three Patroni members, ha-api1 (the APIs, their edge, the
simulator), ha-backup1 (the repository host and the monitoring host) and ha-client1 (the data
collection team's machine, outside the servers). Every check runs inside the scenario's own
containers (podman exec), or as podman on the host against them (killing and starting a member):
traffic stays on the scenario's network.
"""

from __future__ import annotations

import functools
import json
import shlex
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))

from support import (
    PGBACKREST,
    PROJECT,
    STANZA,
    api_key,
    backups,
    environments,
    plain_output,
    platforms,
    reached,
    read_vault,
    role_default,
    run_playbook,
    start_load,
    stop_load,
    vault,
    wait_for,
)

__all__ = [
    "PGBACKREST",
    "STANZA",
    "api_key",
    "backups",
    "environments",
    "plain_output",
    "reached",
    "run_playbook",
    "start_load",
    "stop_load",
    "vault",
    "wait_for",
]

SCENARIO = Path(__file__).resolve().parents[1]
MEMBERS = ("ha-db1", "ha-db2", "ha-db3")
# The servers Ansible manages (the client only trusts the CA and serves the test PGDG mirror).
SERVERS = (*MEMBERS, "ha-api1", "ha-backup1")
# Where each test appends what it measured (one JSON object per line), for the closing figures.
MEASUREMENTS = PROJECT / ".cache" / "ha-measurements.jsonl"


@pytest.fixture(scope="session")
def api():
    return testinfra.get_host("podman://ha-api1")


@pytest.fixture(scope="session")
def client():
    """The data collection team's machine: the tests' load goes from it through the edge."""
    return testinfra.get_host("podman://ha-client1")


@pytest.fixture(scope="session")
def repository():
    """ha-backup1: pgBackRest's repository host (the backup timers, repo1 and repo2)."""
    return testinfra.get_host("podman://ha-backup1")


@pytest.fixture(scope="session")
def address() -> dict[str, str]:
    """Inventory host -> its pinned address on the scenario's network."""
    return {name: platform["address"] for name, platform in platforms(SCENARIO).items()}


# The monitoring host: Prometheus and Alertmanager on loopback there, behind basic auth.
MONITOR = "ha-backup1"
PROMETHEUS = f"http://127.0.0.1:{role_default('monitoring', 'monitoring_prometheus_port')}"
ALERTMANAGER = f"http://127.0.0.1:{role_default('monitoring', 'monitoring_alertmanager_port')}"


@functools.cache
def _monitoring_auth() -> str:
    """curl's -u for Prometheus and Alertmanager: the role's user, the vault's monitoring password."""
    user = role_default("monitoring", "monitoring_web_username")
    return f"-u {shlex.quote(user + ':' + read_vault()['vault_monitoring_web_password'])}"


def prometheus_query(promql: str) -> list[dict]:
    url = f"{PROMETHEUS}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    out = member(MONITOR).check_output(f"curl -fsS {_monitoring_auth()} {shlex.quote(url)}")
    return json.loads(out)["data"]["result"]


def alertmanager_alerts(alertname: str) -> list[dict]:
    """The alerts of that name Alertmanager holds now (active ones; a resolved one is gone)."""
    matcher = 'alertname="' + alertname + '"'
    url = f"{ALERTMANAGER}/api/v2/alerts?{urllib.parse.urlencode({'filter': matcher})}"
    out = member(MONITOR).check_output(f"curl -fsS {_monitoring_auth()} {shlex.quote(url)}")
    return [a for a in json.loads(out) if a["status"]["state"] == "active"]


def member(name: str):
    return testinfra.get_host(f"podman://{name}")


def running(name: str) -> bool:
    out = subprocess.run(
        ["podman", "container", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True
    )
    return out.stdout.strip() == "true"


def cluster_view() -> list[dict]:
    """patronictl list from the first running member that answers: Member, Role, State, TL, Lag in MB."""
    for name in MEMBERS:
        if not running(name):
            continue
        out = member(name).run("runuser -u postgres -- patronictl -c /etc/patroni/config.yml list -f json")
        if out.rc == 0:
            return json.loads(out.stdout)
    return []


def leader(view: list[dict]) -> str | None:
    names = [m["Member"] for m in view if m["Role"] == "Leader" and m["State"] == "running"]
    return names[0] if len(names) == 1 else None


def healthy(view: list[dict]) -> bool:
    """One leader, a synchronous standby, every member running on the leader's timeline, no lag."""
    lead = leader(view)
    if lead is None or len(view) != len(MEMBERS):
        return False
    timeline = next(m["TL"] for m in view if m["Member"] == lead)
    return (
        any(m["Role"] == "Sync Standby" for m in view)
        and all(m["State"] in ("running", "streaming") and m.get("TL") == timeline for m in view)
        and all(m.get("Lag in MB", 0) == 0 for m in view if m["Role"] != "Leader")
    )


def wait_healthy(timeout: float = 180) -> list[dict]:
    return wait_for(lambda: (v := cluster_view()) and healthy(v) and v, timeout, "a healthy Patroni cluster")


def leading():
    """The member that leads, once the cluster is healthy, as a testinfra host."""
    return member(leader(wait_healthy()))


def psql(host, sql: str, db: str = "postgres", check: bool = True):
    command = f"runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 -d {shlex.quote(db)} -c {shlex.quote(sql)}"
    return host.check_output(command) if check else host.run(command)


def record(measurement: dict) -> None:
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    with MEASUREMENTS.open("a") as out:
        out.write(json.dumps(measurement) + "\n")
    print("measured:", json.dumps(measurement))

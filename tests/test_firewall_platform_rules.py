"""The firewall role's own rules (firewall_platform_rules) for each layout the repository has: the
single host (molecule/default, inventories/production), a split one (one database host, an API host
and a dedicated repository host), and the Patroni cluster (molecule/ha). The expected rules are the
ones playbooks/firewall.yml computed with play-level Jinja before the role took it over (rendered
for these groups and addresses), each now naming the role whose port it opens; the ports come from
the owning roles' defaults (firewall_owner_settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from conftest import load_source

REPO_ROOT = Path(__file__).resolve().parent.parent
PLUGIN = REPO_ROOT / "roles/firewall/filter_plugins/firewall.py"


plugin = load_source(PLUGIN, "firewall_filters")

# The edge's ports of the inventories' dw_environments (api_port + 443: 8000, 8001, 8002).
EDGE_PORTS = [8443, 8444, 8445]


def settings(**host_vars: Any) -> dict[str, Any]:
    """One host's settings as the role builds them: the owners' defaults under this host's own values."""
    own = {name: value for name, value in host_vars.items() if name != "ingest_client_networks"}
    return plugin.owner_settings(own) | {
        "ingest_client_networks": host_vars.get("ingest_client_networks", []),
        "edge_ports": EDGE_PORTS,
    }


def rule(name: str, port: Any, sources: list[str], owner: str) -> dict[str, Any]:
    key = "ports" if isinstance(port, list) else "port"
    return {"name": name, key: port, "proto": "tcp", "sources": sources, "owner": owner}


# --- The ports: the owning roles' defaults, once ----------------------------------------------------


def test_ports_come_from_the_owning_roles_defaults():
    assert plugin.owner_settings({}) == {
        "postgresql_port": 5432,
        "pgbackrest_tls_server_port": 8432,
        "patroni_restapi_port": 8008,
        "etcd_client_port": 2379,
        "etcd_peer_port": 2380,
        "node_exporter_port": 9100,
        "node_exporter_listen_address": "127.0.0.1",
    }


def test_every_owner_defaults_its_settings_in_its_own_role():
    for owner, names in plugin.OWNER_SETTINGS.items():
        defaults = yaml.safe_load((REPO_ROOT / "roles" / owner / "defaults/main.yml").read_text())
        for name in names:
            assert name in defaults, f"roles/{owner}/defaults/main.yml lacks {name}"


def test_the_hosts_own_values_win():
    found = plugin.owner_settings({"postgresql_port": 5433, "node_exporter_listen_address": "10.0.0.5"})
    assert found["postgresql_port"] == 5433
    assert found["node_exporter_listen_address"] == "10.0.0.5"
    assert found["node_exporter_port"] == 9100


def test_a_default_the_firewall_cannot_read_fails_naming_the_variable(tmp_path):
    (tmp_path / "postgresql/defaults").mkdir(parents=True)
    (tmp_path / "postgresql/defaults/main.yml").write_text('postgresql_port: "{{ other }}"\n')
    with pytest.raises(AnsibleFilterError, match="postgresql_port"):
        plugin.owner_settings({}, tmp_path)
    with pytest.raises(AnsibleFilterError, match="pgbackrest_tls_server_port"):
        plugin.owner_settings({"postgresql_port": 5432}, tmp_path)


# --- The layouts ---------------------------------------------------------------------------------------

SINGLE = "dw-molecule-bookworm"
SINGLE_GROUPS = {
    group: [SINGLE]
    for group in ("db_servers", "api_servers", "backup_servers", "simulator_servers", "s3_repo3", "monitoring_test")
}

CLUSTER_GROUPS = {
    "db_servers": ["db1"],
    "api_servers": ["api1"],
    "simulator_servers": ["api1"],
    "backup_servers": ["backup1"],
    "managed": ["db1", "api1", "backup1"],
    "clients": ["client1"],
}
CLUSTER = {"db1": "10.89.42.11", "api1": "10.89.42.12", "backup1": "10.89.42.13", "client1": "10.89.42.14"}

HA_GROUPS = {
    "db_servers": ["ha-db1", "ha-db2", "ha-db3"],
    "api_servers": ["ha-api1"],
    "backup_servers": ["ha-backup1"],
    "managed": ["ha-db1", "ha-db2", "ha-db3", "ha-api1", "ha-backup1"],
}
HA = {
    "ha-db1": "10.89.44.11",
    "ha-db2": "10.89.44.12",
    "ha-db3": "10.89.44.13",
    "ha-api1": "10.89.44.14",
    "ha-backup1": "10.89.44.15",
}


def _cluster_settings(host: str) -> dict[str, Any]:
    """The split layout's settings: every managed host's node exporter on its address, the edge
    open to client1 (api_servers)."""
    own: dict[str, Any] = {"node_exporter_listen_address": CLUSTER[host]}
    if host == "api1":
        own["ingest_client_networks"] = ["10.89.42.14/32"]
    return settings(**own)


def _ha_db(host: str, others: list[str]) -> list[dict[str, Any]]:
    return [
        rule("postgresql", 5432, ["10.89.44.14"], "postgresql"),
        rule("pgbackrest-tls", 8432, ["10.89.44.15"], "pgbackrest"),
        rule("postgresql-replication", 5432, others, "postgresql"),
        rule("etcd", [2379, 2380], others, "etcd"),
        rule("patroni-rest-api", 8008, others, "patroni"),
    ]


CASES = {
    # molecule/default and the local inventory: every group on one host, nothing to open.
    "default": (SINGLE_GROUPS, {SINGLE: "10.88.0.5"}, SINGLE, settings(), []),
    # inventories/production as it is, and with the settings its comments propose.
    "production": (
        {g: ["dw-production"] for g in ("db_servers", "api_servers", "backup_servers", "simulator_servers")},
        {"dw-production": "192.0.2.20"},
        "dw-production",
        settings(),
        [],
    ),
    "production, ingest_client_networks set": (
        {g: ["dw-production"] for g in ("db_servers", "api_servers", "backup_servers", "simulator_servers")},
        {"dw-production": "192.0.2.20"},
        "dw-production",
        settings(ingest_client_networks=["198.51.100.0/24"]),
        [rule("ingest-edge", EDGE_PORTS, ["198.51.100.0/24"], "ingest_edge")],
    ),
    # The split layout: db1, api1, backup1 (the repository host), client1 (not a server).
    "cluster db1": (
        CLUSTER_GROUPS,
        CLUSTER,
        "db1",
        _cluster_settings("db1"),
        [
            rule("postgresql", 5432, ["10.89.42.12"], "postgresql"),
            rule("pgbackrest-tls", 8432, ["10.89.42.13"], "pgbackrest"),
            # db1 is the monitoring host: no one else scrapes its node exporter.
        ],
    ),
    "cluster api1": (
        CLUSTER_GROUPS,
        CLUSTER,
        "api1",
        _cluster_settings("api1"),
        [
            rule("node-exporter", 9100, ["10.89.42.11"], "node_exporter"),
            rule("ingest-edge", EDGE_PORTS, ["10.89.42.14/32"], "ingest_edge"),
        ],
    ),
    "cluster backup1": (
        CLUSTER_GROUPS,
        CLUSTER,
        "backup1",
        _cluster_settings("backup1"),
        [
            rule("pgbackrest-tls", 8432, ["10.89.42.11"], "pgbackrest"),
            rule("node-exporter", 9100, ["10.89.42.11"], "node_exporter"),
        ],
    ),
    # molecule/ha: three Patroni members, the API host, the repository host.
    "ha ha-db1": (HA_GROUPS, HA, "ha-db1", settings(), _ha_db("ha-db1", ["10.89.44.12", "10.89.44.13"])),
    "ha ha-db2": (HA_GROUPS, HA, "ha-db2", settings(), _ha_db("ha-db2", ["10.89.44.11", "10.89.44.13"])),
    "ha ha-db3": (HA_GROUPS, HA, "ha-db3", settings(), _ha_db("ha-db3", ["10.89.44.11", "10.89.44.12"])),
    "ha ha-api1": (HA_GROUPS, HA, "ha-api1", settings(), []),
    "ha ha-backup1": (
        HA_GROUPS,
        HA,
        "ha-backup1",
        settings(),
        [rule("pgbackrest-tls", 8432, ["10.89.44.11", "10.89.44.12", "10.89.44.13"], "pgbackrest")],
    ),
    # molecule/ha as it converges site.yml: monitoring on the repository host, which reads the
    # members' Patroni and etcd metrics and every node exporter.
    "ha ha-db1, monitoring on ha-backup1": (
        HA_GROUPS | {"monitoring_servers": ["ha-backup1"]},
        HA,
        "ha-db1",
        settings(node_exporter_listen_address="10.89.44.11"),
        [
            *_ha_db("ha-db1", ["10.89.44.12", "10.89.44.13"]),
            rule("patroni-rest-api-monitoring", 8008, ["10.89.44.15"], "patroni"),
            rule("etcd-monitoring", 2379, ["10.89.44.15"], "etcd"),
            rule("node-exporter", 9100, ["10.89.44.15"], "node_exporter"),
        ],
    ),
    "ha ha-backup1, monitoring on ha-backup1": (
        HA_GROUPS | {"monitoring_servers": ["ha-backup1"]},
        HA,
        "ha-backup1",
        settings(node_exporter_listen_address="10.89.44.15"),
        [rule("pgbackrest-tls", 8432, ["10.89.44.11", "10.89.44.12", "10.89.44.13"], "pgbackrest")],
    ),
    # The cluster with its own ports and a monitoring group (api1): the ports follow the inventory.
    "cluster db1, own ports, monitoring on api1": (
        CLUSTER_GROUPS | {"monitoring_servers": ["api1"]},
        CLUSTER,
        "db1",
        settings(
            postgresql_port=5433,
            pgbackrest_tls_server_port=8433,
            node_exporter_port=9101,
            node_exporter_listen_address="10.89.42.11",
        ),
        [
            rule("postgresql", 5433, ["10.89.42.12"], "postgresql"),
            rule("pgbackrest-tls", 8433, ["10.89.42.13"], "pgbackrest"),
            rule("node-exporter", 9101, ["10.89.42.12"], "node_exporter"),
        ],
    ),
    "ha ha-db2, own ports, node exporters open": (
        HA_GROUPS,
        HA,
        "ha-db2",
        settings(
            postgresql_port=5440,
            etcd_client_port=12379,
            etcd_peer_port=12380,
            patroni_restapi_port=8009,
            node_exporter_listen_address="0.0.0.0",  # noqa: S104 - an inventory value under test
        ),
        [
            rule("postgresql", 5440, ["10.89.44.14"], "postgresql"),
            rule("pgbackrest-tls", 8432, ["10.89.44.15"], "pgbackrest"),
            rule("postgresql-replication", 5440, ["10.89.44.11", "10.89.44.13"], "postgresql"),
            rule("etcd", [12379, 12380], ["10.89.44.11", "10.89.44.13"], "etcd"),
            rule("patroni-rest-api", 8009, ["10.89.44.11", "10.89.44.13"], "patroni"),
            rule("node-exporter", 9100, ["10.89.44.11"], "node_exporter"),
        ],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_rules_of_each_layout(case):
    groups, addresses, host, host_settings, expected = CASES[case]
    assert plugin.platform_rules(groups, addresses, host, host_settings) == expected


@pytest.mark.parametrize("case", CASES)
def test_the_rules_pass_the_roles_own_checks(case):
    groups, addresses, host, host_settings, _ = CASES[case]
    rules = plugin.platform_rules(groups, addresses, host, host_settings)
    assert plugin.problems(rules, ["10.0.0.0/24"], 22) == []


def test_a_host_without_an_address_is_left_out():
    addresses = HA | {"ha-db3": ""}
    rules = plugin.platform_rules(HA_GROUPS, addresses, "ha-db1", settings())
    assert rules[2] == rule("postgresql-replication", 5432, ["10.89.44.12"], "postgresql")


def test_pgbackrest_needs_its_peers_address():
    addresses = {name: address for name, address in CLUSTER.items() if name != "backup1"}
    with pytest.raises(AnsibleFilterError, match="backup1"):
        plugin.platform_rules(CLUSTER_GROUPS, addresses, "db1", _cluster_settings("db1"))


def test_the_firewall_playbook_only_orchestrates():
    plays = yaml.safe_load((REPO_ROOT / "playbooks/firewall.yml").read_text())
    for play in plays:
        assert "vars" not in play, play.get("name")
        for role in play.get("roles", []):
            assert not isinstance(role, dict) or set(role) == {"role"}, role

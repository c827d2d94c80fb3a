"""The topology fact set (groups | dw_topology) and dw_role_default, computed in one place (#25)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from conftest import load_source

ROOT = Path(__file__).resolve().parents[1]
topo = load_source(ROOT / "roles" / "dw_environments" / "filter_plugins" / "dw_topology.py", "dw_topology")

SINGLE = {"all": ["db1"], "db_servers": ["db1"], "backup_servers": ["db1"], "api_servers": ["db1"]}
CLUSTER = {"db_servers": ["db1"], "backup_servers": ["backup1"], "api_servers": ["api1", "api2"]}
HA = {
    "db_servers": ["ha-db1", "ha-db2", "ha-db3"],
    "backup_servers": ["ha-backup1"],
    "monitoring_servers": ["ha-backup1"],
}


def old_values(groups: dict) -> dict:
    """What the replaced expressions gave (monitoring.yml's hosts, the roles' defaults)."""
    db = groups.get("db_servers") or []
    return {
        "monitoring_hosts": groups["monitoring_servers"] if "monitoring_servers" in groups else db[:1],
        "patroni": len(db) > 1,
        "patroni_hosts": db if len(db) > 1 else [],
        "repository_hosts": groups.get("backup_servers") or [],
    }


@pytest.mark.parametrize("groups", [SINGLE, CLUSTER, HA, {}, {"monitoring_servers": []}])
def test_the_topology_gives_what_the_replaced_expressions_gave(groups: dict) -> None:
    facts = topo.topology(groups)
    assert {name: facts[name] for name in old_values(groups)} == old_values(groups)


def test_the_topology_of_the_layouts() -> None:
    assert topo.topology(SINGLE)["repository_host"] == "db1"
    assert topo.topology(HA)["patroni"] and topo.topology(HA)["monitoring_hosts"] == ["ha-backup1"]
    assert topo.topology(CLUSTER)["monitoring_hosts"] == ["db1"]
    assert topo.topology(CLUSTER)["edge_hosts"] == ["api1", "api2"]
    assert topo.topology({})["repository_host"] == ""


def test_a_role_default_is_read_from_its_role() -> None:
    assert topo.role_default("pgbackrest", "pgbackrest_stanza") == "main-cluster"
    with pytest.raises(AnsibleFilterError):
        topo.role_default("pgbackrest", "pgbackrest_no_such_variable")
    with pytest.raises(AnsibleFilterError):
        topo.role_default("pgbackrest", "pgbackrest_repo_host")  # templated: not usable elsewhere

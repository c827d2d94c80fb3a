"""molecule/ha runs inventories/production's own group_vars with a small test overlay on top: the
test network's addresses, the test secrets, the PGDG-shaped mirror and the major it holds, the SSH
key made for the run, and test timings. This lists every key the overlay sets, so it cannot
quietly grow into a second configuration: a new key must be added here, with its reason."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "molecule" / "ha"
PRODUCTION = ROOT / "inventories" / "production" / "group_vars" / "all" / "vars.yml"

# Every key the scenario sets beside production's, by why it differs.
OVERLAY = {
    # The containers: systemd in rootful podman cannot set up a user namespace.
    "dw_systemd_private_users",
    # Addresses of the test network (production leaves them to its operators).
    "firewall_admin_networks",
    "ingest_client_networks",
    "ingest_api_db_host",
    "ingest_api_db_hosts",
    "node_exporter_listen_address",
    "postgresql_listen_addresses",
    "ansible_host",
    # Secrets and keys made for the run (the vault is the local inventory's test vault).
    "team_access_members",
    "ansible_ssh_private_key_file",
    "ansible_ssh_common_args",
    # The transport, as production's hosts.yml sets it (molecule's inventory says podman).
    "ansible_connection",
    "ansible_user",
    "ansible_become",
    # The PGDG-shaped mirror on the test network, and the major it holds.
    "pgdg_mirror_port",
    "pgdg_mirror_postgresql_version",
    "postgresql_version",
    "postgresql_pgdg_apt_url",
    "postgresql_pgdg_apt_key_url",
    # Test timings: alerts that fire within a short test.
    "monitoring_scrape_interval",
    "monitoring_evaluation_interval",
    "monitoring_alert_for",
    "monitoring_unit_failed_for",
    "monitoring_group_wait",
    "monitoring_group_interval",
    "monitoring_repeat_interval",
    # Test timing: the loss of the whole cluster costs at most this, within a short load.
    "postgresql_archive_timeout",
}


def _overlay_files() -> list[Path]:
    files = sorted(p for d in ("group_vars", "host_vars") for p in (SCENARIO / d).rglob("*.yml"))
    return [p for p in files if p.resolve() != PRODUCTION.resolve() and p.name != "vault.yml"]


def _keys() -> dict[str, set[str]]:
    return {str(p.relative_to(SCENARIO)): set(yaml.safe_load(p.read_text()) or {}) for p in _overlay_files()}


def test_the_scenario_reads_productions_own_group_vars():
    link = SCENARIO / "group_vars" / "all" / "inventory.yml"
    assert link.is_symlink() and link.resolve() == PRODUCTION.resolve()
    # Loaded before the overlay (a group_vars directory's files are read in name order).
    assert sorted(p.name for p in link.parent.iterdir()) == ["inventory.yml", "overlay.yml", "vault.yml"]


def test_the_overlay_sets_only_the_listed_keys():
    found = _keys()
    unlisted = {f"{path}: {key}" for path, keys in found.items() for key in keys - OVERLAY}
    assert not unlisted, f"keys beside production's that no one listed in OVERLAY: {sorted(unlisted)}"
    unused = OVERLAY - set().union(*found.values())
    assert not unused, f"listed in OVERLAY but set nowhere (remove them): {sorted(unused)}"
    print({path: sorted(keys) for path, keys in found.items()})

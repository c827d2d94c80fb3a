"""The platform's topology, computed from the inventory's groups in one place (issue #25).

`groups | dw_topology` gives which hosts play which part: the database members and whether they
form a Patroni cluster, the backup repository, the monitoring host, the API and edge hosts. It reads
only `groups`, so it also works in a play's `hosts:` line, where no fact exists yet (every playbook
imports playbooks/check-inventory.yml, which loads this role and so this filter, before its own
plays). The roles that use it (postgresql, monitoring, dw_status, node_exporter, postgres_exporter,
pgbackrest, ingest_edge, etcd, patroni) hold a symbolic link to this file in their filter_plugins,
so they also work when run without that play.

`'<role>' | dw_role_default('<variable>')` is a role's own default, read from
roles/<role>/defaults/main.yml: a role that needs another role's setting outside that role's play
reads `other_variable | default('<role>' | dw_role_default('other_variable'))` instead of repeating
the other role's default as a literal (the firewall role's owner_settings reads its owners' ports
the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

ROLES_DIR = Path(__file__).resolve().parents[2]


def _members(groups: Mapping[str, Any], group: str) -> list[str]:
    return list(groups.get(group) or [])


def topology(groups: Mapping[str, Any]) -> dict[str, Any]:
    """db_hosts (db_servers); patroni: more than one database host (then Patroni runs them);
    patroni_hosts: those members under Patroni, else none; repository_hosts (backup_servers) and
    repository_host, the first of them ('' without one); monitoring_hosts: the monitoring_servers
    group when the inventory has one, else the first database host; api_hosts and edge_hosts
    (api_servers: the TLS edge runs on the API hosts)."""
    db_hosts = _members(groups, "db_servers")
    patroni = len(db_hosts) > 1
    repository_hosts = _members(groups, "backup_servers")
    return {
        "db_hosts": db_hosts,
        "patroni": patroni,
        "patroni_hosts": db_hosts if patroni else [],
        "repository_hosts": repository_hosts,
        "repository_host": repository_hosts[0] if repository_hosts else "",
        "monitoring_hosts": (
            _members(groups, "monitoring_servers") if "monitoring_servers" in groups else db_hosts[:1]
        ),
        "api_hosts": _members(groups, "api_servers"),
        "edge_hosts": _members(groups, "api_servers"),
    }


def role_default(role: str, name: str, roles_dir: Any = None) -> Any:
    """The default of `name` in roles/<role>/defaults/main.yml; an error when it has none or only a
    templated one (which cannot be evaluated outside that role)."""
    path = Path(roles_dir or ROLES_DIR) / role / "defaults" / "main.yml"
    try:
        defaults = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise AnsibleFilterError(f"{name}: {path} cannot be read ({error}); set {name} in the inventory") from error
    value = defaults.get(name) if isinstance(defaults, Mapping) else None
    if value is None or (isinstance(value, str) and "{{" in value):
        raise AnsibleFilterError(f"{path} gives {name} no plain default; set {name} in the inventory")
    return value


class FilterModule:
    """dw_topology, dw_role_default."""

    def filters(self) -> dict[str, Any]:
        return {"dw_topology": topology, "dw_role_default": role_default}

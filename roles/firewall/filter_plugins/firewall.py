"""Addresses and service rules of the firewall role: the platform's own rules from the inventory's
topology, validation, and the split into IPv4/IPv6.

nftables matches IPv4 and IPv6 sources with different expressions (ip saddr / ip6 saddr), so every
address list of the inventory is normalised and split here once, with Python's ipaddress module
(no netaddr needed on the controller), and the template only prints the result.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

# A service's name becomes an nft comment: printable, no quotes.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]{0,63}$")
PORT_RANGE_PATTERN = re.compile(r"^(\d{1,5})-(\d{1,5})$")
PROTOCOLS = ("tcp", "udp")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(value: Any) -> Network | None:
    """One address or CIDR as a network (host bits ignored), or None when it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        mapped = network.network_address.ipv4_mapped
        return ipaddress.ip_network(f"{mapped}/{max(network.prefixlen - 96, 0)}", strict=False)
    return network


def _text(network: Network) -> str:
    """A network as nft prints it: a bare address for a single host, else address/prefix."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def split(values: Sequence[Any] | None) -> dict[str, list[str]]:
    """Addresses and CIDRs split by family and collapsed (no duplicates or overlaps); invalid ones dropped."""
    networks = [network for network in map(_network, values or []) if network is not None]
    return {
        family: [_text(net) for net in ipaddress.collapse_addresses(n for n in networks if n.version == version)]
        for family, version in (("v4", 4), ("v6", 6))
    }


def covers(networks: Sequence[Any] | None, address: Any) -> bool:
    """Whether one of the networks contains the address."""
    target = _network(address)
    if target is None:
        return False
    return any(
        network is not None and network.version == target.version and target.subnet_of(network)  # type: ignore[arg-type]
        for network in map(_network, networks or [])
    )


def ssh_client(value: Any) -> dict[str, Any]:
    """SSH_CLIENT ("address client-port server-port") as {address, port}; {} when unusable."""
    parts = str(value or "").split()
    if len(parts) != 3 or not parts[2].isdigit():
        return {}
    network = _network(parts[0].split("%", 1)[0])  # an IPv6 link-local address carries %zone
    if network is None:
        return {}
    return {"address": _text(network), "port": int(parts[2])}


def _port_problems(label: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [f"{label}: port {value!r} must be a number from 1 to 65535 or a range 'low-high'"]
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        if 1 <= int(value) <= 65535:
            return []
    elif isinstance(value, str) and (match := PORT_RANGE_PATTERN.match(value)):
        low, high = int(match.group(1)), int(match.group(2))
        if 1 <= low < high <= 65535:
            return []
    return [f"{label}: port {value!r} must be a number from 1 to 65535 or a range 'low-high'"]


def _address_problems(label: str, values: Any) -> list[str]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        return [f"{label} must be a list of addresses or CIDRs"]
    return [f"{label}: {value!r} is not an IPv4/IPv6 address or CIDR" for value in values if _network(value) is None]


def problems(services: Any, admin_networks: Any, ssh_port: Any) -> list[str]:
    """Every rule the firewall settings break, one message each, naming the variable and entry."""
    found: list[str] = []
    if not admin_networks:
        found.append(
            "firewall_admin_networks is empty: set it in the inventory to the networks SSH is allowed from"
            " (an empty list would allow SSH from nowhere, and the role never opens it to everyone)"
        )
    else:
        found += _address_problems("firewall_admin_networks", admin_networks)
    if isinstance(ssh_port, bool) or not str(ssh_port).isdigit() or not 1 <= int(ssh_port) <= 65535:
        found.append(f"firewall_ssh_port {ssh_port!r} must be a number from 1 to 65535")
    if not isinstance(services, Sequence) or isinstance(services, str):
        return [*found, "firewall_allowed_services must be a list of services"]
    seen: dict[str, str] = {}
    for index, service in enumerate(services):
        label = f"firewall_allowed_services[{index}]"
        if not isinstance(service, Mapping):
            found.append(f"{label} must be a mapping with name, port or ports, proto and sources")
            continue
        name = service.get("name")
        label += f" ({name})"
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            found.append(f"{label}: name must match {NAME_PATTERN.pattern}")
        elif name in seen:
            found.append(f"{label}: name is already used by {seen[name]}")
        else:
            seen[name] = label
        if ("port" in service) == ("ports" in service):
            found.append(f"{label}: set exactly one of port and ports")
        elif "port" in service:
            found += _port_problems(label, service["port"])
        elif not isinstance(service["ports"], Sequence) or isinstance(service["ports"], str) or not service["ports"]:
            found.append(f"{label}: ports must be a non-empty list")
        else:
            for port in service["ports"]:
                found += _port_problems(label, port)
        if service.get("proto", "tcp") not in PROTOCOLS:
            found.append(f"{label}: proto {service.get('proto')!r} must be tcp or udp")
        sources = service.get("sources")
        if not sources:
            found.append(
                f"{label}: sources is empty; list the addresses or CIDRs allowed in"
                " (0.0.0.0/0 and ::/0 when it really is everyone)"
            )
        else:
            found += _address_problems(f"{label}.sources", sources)
    return found


def ports(service: Mapping[str, Any]) -> list[str]:
    """A service's port or ports as nft text (numbers and low-high ranges)."""
    values = service.get("ports", [service.get("port")])
    return [str(value) for value in values]


# The other roles' settings the platform's rules read, by the role that owns each (serves the port
# and sets its default in its defaults/main.yml). A rule's owner is one of these roles, or
# ingest_edge (its ports come from dw_environments).
OWNER_SETTINGS: dict[str, tuple[str, ...]] = {
    "postgresql": ("postgresql_port",),
    "pgbackrest": ("pgbackrest_tls_server_port",),
    "patroni": ("patroni_restapi_port",),
    "etcd": ("etcd_client_port", "etcd_peer_port"),
    "node_exporter": ("node_exporter_port", "node_exporter_listen_address"),
}
# The roles directory this role is in: roles/firewall/filter_plugins/firewall.py.
ROLES_DIR = Path(__file__).resolve().parents[2]
# A node exporter listening on one of these is not reachable from other hosts: no rule.
LOOPBACK_ADDRESSES = ("127.0.0.1", "localhost", "::1")


def _load_topology():
    """The dw_environments role's dw_topology filter: which hosts play which part, computed there
    once (the firewall admits each part's peers)."""
    path = ROLES_DIR / "dw_environments" / "filter_plugins" / "dw_topology.py"
    spec = importlib.util.spec_from_file_location("dw_topology_for_firewall", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.topology


topology = _load_topology()


def owner_settings(host_vars: Mapping[str, Any], roles_dir: Any = None) -> dict[str, Any]:
    """Every setting of OWNER_SETTINGS: this host's own value (inventory, group_vars, extra vars) when
    it has one, else the owning role's default, read from <owner>/defaults/main.yml in roles_dir (the
    roles directory holding this role). Those roles are not part of the firewall's play, so their
    defaults are not loaded there; reading their files leaves each port's default in one place, its
    own role."""
    settings: dict[str, Any] = {}
    for owner, names in OWNER_SETTINGS.items():
        missing = [name for name in names if name not in host_vars]
        settings |= {name: host_vars[name] for name in names if name in host_vars}
        if not missing:
            continue
        path = Path(roles_dir or ROLES_DIR) / owner / "defaults" / "main.yml"
        try:
            defaults = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise AnsibleFilterError(
                f"the firewall reads {', '.join(missing)} from {path}, which cannot be read ({error});"
                " set them in the inventory"
            ) from error
        for name in missing:
            value = defaults.get(name) if isinstance(defaults, Mapping) else None
            if value is None or (isinstance(value, str) and "{{" in value):
                raise AnsibleFilterError(
                    f"{path} gives {name} no plain value the firewall can use; set {name} in the inventory"
                )
            settings[name] = value
    return settings


def _addresses(hosts: Sequence[str], addresses: Mapping[str, Any], host: str, rule: str | None = None) -> list[str]:
    """The addresses of hosts other than this one. A host without a known address is left out, or,
    for a rule that cannot do without it (rule given), an error naming it."""
    found = []
    for name in hosts:
        if name == host:
            continue
        if addresses.get(name):
            found.append(addresses[name])
        elif rule is not None:
            raise AnsibleFilterError(
                f"{host}'s {rule} rule admits {name}, whose address is unknown"
                " (ansible_facts.default_ipv4.address: were its facts gathered?)"
            )
    return found


def platform_rules(
    groups: Mapping[str, Any], addresses: Mapping[str, Any], host: str, settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The services the platform's own roles serve on host, each admitting only its peers.

    groups: the inventory's groups (name -> hosts); addresses: each host's address (hosts without
    one may be missing or empty); host: the host the rules are for; settings: the ports of
    OWNER_SETTINGS (owner_settings), plus ingest_client_networks and edge_ports (the edge's port
    of each environment). Each rule names the role whose port it opens (owner).

    - PostgreSQL (a database host) from the API hosts;
    - pgBackRest's TLS server, in the dedicated repository host layout only (the first backup
      host, not a database host): a database host (every member of a Patroni cluster) admits the
      repository host, and the repository host admits the database hosts; no one else;
    - a Patroni cluster (several database hosts): members replicate to each other and reach each
      other's etcd and Patroni REST API; a monitoring host outside the cluster reaches the REST
      API and etcd's client port; nothing else reaches etcd or the REST API;
    - a node exporter the inventory opens (node_exporter_listen_address not loopback) from the
      monitoring host (the monitoring_servers group, else the first database host) only;
    - the edge's HTTPS ports (an API host) from ingest_client_networks.
    """
    parts = topology(groups)
    db_hosts, api_hosts, monitoring_hosts = parts["db_hosts"], parts["api_hosts"], parts["monitoring_hosts"]
    rules: list[dict[str, Any]] = []

    db_clients = list(dict.fromkeys(_addresses(api_hosts, addresses, host)))
    if host in db_hosts and db_clients:
        rules.append(_rule("postgresql", settings["postgresql_port"], db_clients, "postgresql"))

    repo_host = parts["repository_host"]
    if repo_host and repo_host not in db_hosts and host in [*db_hosts, repo_host]:
        peers = db_hosts if host == repo_host else [repo_host]
        sources = _addresses(peers, addresses, host, rule="pgbackrest-tls")
        rules.append(_rule("pgbackrest-tls", settings["pgbackrest_tls_server_port"], sources, "pgbackrest"))

    if host in parts["patroni_hosts"]:
        members = _addresses(db_hosts, addresses, host)
        rules += [
            _rule("postgresql-replication", settings["postgresql_port"], members, "postgresql"),
            _rule("etcd", [settings["etcd_client_port"], settings["etcd_peer_port"]], members, "etcd"),
            _rule("patroni-rest-api", settings["patroni_restapi_port"], members, "patroni"),
        ]
        # Prometheus on a monitoring host outside the cluster reads the members' metrics: Patroni's
        # REST API and etcd's client port (each with a client certificate of the CA), not etcd's
        # peer port.
        scrapers = _addresses([h for h in monitoring_hosts if h not in db_hosts], addresses, host)
        if scrapers:
            rules += [
                _rule("patroni-rest-api-monitoring", settings["patroni_restapi_port"], scrapers, "patroni"),
                _rule("etcd-monitoring", settings["etcd_client_port"], scrapers, "etcd"),
            ]

    if settings["node_exporter_listen_address"] not in LOOPBACK_ADDRESSES:
        scrapers = _addresses(monitoring_hosts, addresses, host)
        if scrapers:
            rules.append(_rule("node-exporter", settings["node_exporter_port"], scrapers, "node_exporter"))

    client_networks = list(settings.get("ingest_client_networks") or [])
    if host in api_hosts and client_networks:
        rules.append(_rule("ingest-edge", list(settings["edge_ports"]), client_networks, "ingest_edge"))
    return rules


def _rule(name: str, port: Any, sources: list[str], owner: str) -> dict[str, Any]:
    """One service rule as firewall_allowed_services has them (port, or ports for a list), and its owner."""
    key = "ports" if isinstance(port, list) else "port"
    return {"name": name, key: port, "proto": "tcp", "sources": sources, "owner": owner}


class FilterModule:
    """Filters of the firewall role."""

    def filters(self) -> dict[str, Any]:
        return {
            "firewall_split": split,
            "firewall_covers": covers,
            "firewall_ssh_client": ssh_client,
            "firewall_problems": problems,
            "firewall_ports": ports,
            "firewall_owner_settings": owner_settings,
            "firewall_platform_rules": platform_rules,
        }

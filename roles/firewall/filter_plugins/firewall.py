"""Addresses and service rules of the firewall role: validation, and the split into IPv4/IPv6.

nftables matches IPv4 and IPv6 sources with different expressions (ip saddr / ip6 saddr), so every
address list of the inventory is normalised and split here once, with Python's ipaddress module
(no netaddr needed on the controller), and the template only prints the result.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

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


class FilterModule:
    """Filters of the firewall role."""

    def filters(self) -> dict[str, Any]:
        return {
            "firewall_split": split,
            "firewall_covers": covers,
            "firewall_ssh_client": ssh_client,
            "firewall_problems": problems,
            "firewall_ports": ports,
        }

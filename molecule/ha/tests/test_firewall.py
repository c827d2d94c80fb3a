"""nftables on every managed host, from the inventory: allowed paths work, everyone else is refused.

Each probe is a TCP connect from one of the scenario's containers to another's address, with a
short timeout, a source's probes at once (support.reached); the ports probed are ones a service
really listens on, so a failure is the firewall's doing (shown by the same port answering from an
allowed host)."""

from __future__ import annotations

import pytest
from conftest import MEMBERS, SERVERS, member, reached
from support import role_default

POSTGRESQL_PORT = role_default("postgresql", "postgresql_port")


@pytest.mark.parametrize("name", SERVERS)
def test_every_managed_host_has_the_ruleset(name):
    host = member(name)
    ruleset = host.check_output("nft list table inet dw_filter")
    assert "policy drop" in ruleset
    assert host.service("nftables").is_enabled


def test_postgresql_only_from_the_api_host_and_the_other_members(api, repository, client, address):
    ports = {name: (address[name], POSTGRESQL_PORT) for name in MEMBERS}
    for name in MEMBERS:
        assert member(name).socket(f"tcp://{address[name]}:{POSTGRESQL_PORT}").is_listening, name
        # Replication and pg_rewind between members.
        others = [ports[other] for other in MEMBERS if other != name]
        assert reached(member(name), others) == set(others), name
    assert reached(api, list(ports.values())) == set(ports.values())
    assert reached(client, list(ports.values())) == set()
    # The repository host reaches PostgreSQL through pgBackRest's TLS server, not the port.
    assert reached(repository, list(ports.values())) == set()


def test_the_edge_only_from_the_client_networks(repository, client, address, environments):
    edges = {(address["ha-api1"], env["edge_port"]) for env in environments}
    assert reached(client, list(edges)) == edges
    assert reached(repository, list(edges)) == set()
    assert reached(member(MEMBERS[0]), list(edges)) == set()


def test_ssh_only_from_the_admin_network(api, repository, client, address):
    servers = {(address[name], 22) for name in SERVERS}
    assert reached(client, list(servers)) == servers
    assert reached(repository, [(address["ha-api1"], 22)]) == set()
    assert reached(api, [(address[MEMBERS[0]], 22)]) == set()


def test_the_apis_themselves_stay_on_loopback(api, client, address, environments):
    for env in environments:
        assert api.socket(f"tcp://127.0.0.1:{env['api_port']}").is_listening
    assert reached(client, [(address["ha-api1"], env["api_port"]) for env in environments]) == set()

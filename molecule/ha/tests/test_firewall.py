"""nftables on every managed host, from the inventory: allowed paths work, everyone else is refused.

Each probe is a TCP connect from one of the scenario's containers to another's address, with a
short timeout; the ports probed are ones a service really listens on, so a failure is the
firewall's doing (shown by the same port answering from an allowed host)."""

from __future__ import annotations

import pytest
from conftest import MEMBERS, SERVERS, connects, member
from support import role_default

POSTGRESQL_PORT = role_default("postgresql", "postgresql_port")


@pytest.mark.parametrize("name", SERVERS)
def test_every_managed_host_has_the_ruleset(name):
    host = member(name)
    ruleset = host.check_output("nft list table inet dw_filter")
    assert "policy drop" in ruleset
    assert host.service("nftables").is_enabled


def test_postgresql_only_from_the_api_host_and_the_other_members(api, repository, client, address):
    for name in MEMBERS:
        assert member(name).socket(f"tcp://{address[name]}:{POSTGRESQL_PORT}").is_listening, name
        assert connects(api, address[name], POSTGRESQL_PORT), name
        # Replication and pg_rewind between members.
        assert all(connects(member(other), address[name], POSTGRESQL_PORT) for other in MEMBERS if other != name)
        assert not connects(client, address[name], POSTGRESQL_PORT), name
        # The repository host reaches PostgreSQL through pgBackRest's TLS server, not the port.
        assert not connects(repository, address[name], POSTGRESQL_PORT), name


def test_the_edge_only_from_the_client_networks(repository, client, address, environments):
    for env in environments:
        assert connects(client, address["ha-api1"], env["edge_port"]), env["name"]
        assert not connects(repository, address["ha-api1"], env["edge_port"]), env["name"]
        assert not connects(member(MEMBERS[0]), address["ha-api1"], env["edge_port"]), env["name"]


def test_ssh_only_from_the_admin_network(api, repository, client, address):
    for name in SERVERS:
        assert connects(client, address[name], 22), name
    assert not connects(repository, address["ha-api1"], 22)
    assert not connects(api, address[MEMBERS[0]], 22)


def test_the_apis_themselves_stay_on_loopback(api, client, address, environments):
    for env in environments:
        assert api.socket(f"tcp://127.0.0.1:{env['api_port']}").is_listening
        assert not connects(client, address["ha-api1"], env["api_port"]), env["name"]

"""nftables on every managed host, from the inventory: allowed paths work, everyone else is refused.

Each probe is a TCP connect from one of the scenario's containers to another's address, with a
short timeout; the ports probed are ones a service really listens on, so a failure is the
firewall's doing (shown by the same port answering from an allowed host)."""

from __future__ import annotations

import pytest


def _connects(source, target_address: str, port: int) -> bool:
    return source.run(f"timeout 4 bash -c '</dev/tcp/{target_address}/{port}'").rc == 0


@pytest.mark.parametrize("name", ["db1", "api1", "backup1"])
def test_every_managed_host_has_the_ruleset(name, db1, api1, backup1):
    host = {"db1": db1, "api1": api1, "backup1": backup1}[name]
    ruleset = host.check_output("nft list table inet dw_filter")
    assert "policy drop" in ruleset
    assert host.service("nftables").is_enabled


def test_postgresql_only_from_the_api_host(db1, api1, backup1, client1, address):
    assert db1.socket(f"tcp://{address['db1']}:5432").is_listening
    assert _connects(api1, address["db1"], 5432)
    assert not _connects(client1, address["db1"], 5432)
    assert not _connects(backup1, address["db1"], 5432)


def test_the_edge_only_from_the_client_networks(api1, backup1, client1, db1, address, environments):
    for env in environments:
        assert _connects(client1, address["api1"], env.edge_port), env.name
        assert not _connects(backup1, address["api1"], env.edge_port), env.name
        assert not _connects(db1, address["api1"], env.edge_port), env.name


def test_ssh_only_from_the_admin_network(api1, backup1, client1, db1, address):
    for name in ("db1", "api1", "backup1"):
        assert _connects(client1, address[name], 22), name
    assert not _connects(backup1, address["api1"], 22)
    assert not _connects(api1, address["db1"], 22)


def test_the_apis_themselves_stay_on_loopback(api1, client1, address, environments):
    for env in environments:
        assert api1.socket(f"tcp://127.0.0.1:{env.api_port}").is_listening
        assert not _connects(client1, address["api1"], env.api_port), env.name

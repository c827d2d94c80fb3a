"""Every unit the project installs or sandboxes scores at most 2.0 in systemd-analyze security:
on a member Patroni's (which runs PostgreSQL there), etcd's and pgBackRest's, on the API host the
APIs, nginx and the simulator, on the repository host pgBackRest's. Patroni and etcd run in the
same sandbox as a single host's postgresql@ unit (drop-ins over the packages' units); before it
they scored 9.2 each. The cluster running in it at all is what the other tests prove."""

from __future__ import annotations

import re

from conftest import MEMBERS, member

MAX_EXPOSURE = 2.0


def _score(host, unit: str) -> float:
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out[-500:]
    return float(match.group(1))


def _pgbackrest_units(host) -> list[str]:
    return host.check_output("cd /etc/systemd/system && ls pgbackrest-*.service").split()


def test_a_members_pgbackrest_units():
    host = member(MEMBERS[0])
    units = _pgbackrest_units(host)
    assert units, "no pgBackRest unit on the member"
    scores = {unit: _score(host, unit) for unit in units}
    print(f"{MEMBERS[0]} exposure:", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_a_members_patroni_and_etcd_units():
    host = member(MEMBERS[0])
    scores = {unit: _score(host, unit) for unit in ("patroni.service", "etcd.service")}
    print(f"{MEMBERS[0]} exposure:", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_the_repository_hosts_units(repository):
    units = _pgbackrest_units(repository)
    assert "pgbackrest-daily.service" in units, units
    scores = {unit: _score(repository, unit) for unit in units}
    print("repository host exposure:", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_the_api_hosts_units(api, environments):
    units = [f"{e['unit']}.service" for e in environments] + ["nginx.service", "market-data-simulator.service"]
    scores = {unit: _score(api, unit) for unit in units}
    print("api host exposure:", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores

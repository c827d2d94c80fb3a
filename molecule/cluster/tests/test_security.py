"""Every unit the project installs or sandboxes scores at most 2.0 in systemd-analyze security,
PostgreSQL's own unit and nginx included."""

from __future__ import annotations

import re

MAX_EXPOSURE = 2.0


def _score(host, unit: str) -> float:
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out[-500:]
    return float(match.group(1))


def test_the_database_hosts_units(db1):
    postgresql = db1.check_output("systemctl list-units --plain --no-legend 'postgresql@*' | awk '{print $1}'")
    units = postgresql.split() + db1.check_output("cd /etc/systemd/system && ls pgbackrest-*.service").split()
    assert any(unit.startswith("postgresql@") for unit in units), units
    scores = {unit: _score(db1, unit) for unit in units}
    print("db1 exposure:", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_the_api_hosts_units(api1, environments):
    units = [f"{e.unit}.service" for e in environments] + ["nginx.service", "market-data-simulator.service"]
    scores = {unit: _score(api1, unit) for unit in units}
    print("api1 exposure:", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores

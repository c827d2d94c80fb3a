"""The cluster scenario's hosts, by name, and what the tests read from the inventory.

Every check runs inside the scenario's own containers (podman exec): traffic goes only between
them, over the scenario's network.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))

from support import api_key, inventory_environments, run_playbook, start_load, stop_load, vault  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[1]

__all__ = ["api_key", "run_playbook", "start_load", "stop_load", "vault"]


@dataclass(frozen=True)
class Environment:
    name: str
    database: str
    api_port: int
    edge_port: int
    unit: str
    api_logins: tuple[str, ...]


@pytest.fixture(scope="session")
def environments() -> list[Environment]:
    return [Environment(e["name"], e["database"], e["api_port"], e["edge_port"], e["unit"],
                        tuple(e["api_logins"].values())) for e in inventory_environments()]


@pytest.fixture(scope="session")
def address() -> dict[str, str]:
    """Inventory host -> its pinned address on the scenario's network."""
    platforms = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["platforms"]
    return dict(platforms[0]["etc_hosts"])


def _host_fixture(name: str):
    @pytest.fixture(scope="session", name=name)
    def host_by_name():
        return testinfra.get_host(f"podman://{name}")

    return host_by_name


# db1, api1, backup1 and client1, each a fixture of its own name.
db1, api1, backup1, client1 = (_host_fixture(name) for name in ("db1", "api1", "backup1", "client1"))


def psql(host, sql: str, db: str = "postgres") -> str:
    """SQL as postgres over db1's local socket; the rows, tab-free and trimmed."""
    return host.check_output(f"runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 -d {shlex.quote(db)} "
                             f"-c {shlex.quote(sql)}")

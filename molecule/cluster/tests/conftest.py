"""The cluster scenario's hosts, by name, and what the tests read from the inventory.

Every check runs inside the scenario's own containers (podman exec): traffic goes only between
them, over the scenario's network.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = PROJECT / "inventories" / "local"
SCENARIO = Path(__file__).resolve().parents[1]


def _load_names_module():
    """The dw_environments role's filter plugin: the one place unit, role and port names are derived."""
    path = PROJECT / "roles" / "dw_environments" / "filter_plugins" / "dw_environments.py"
    spec = importlib.util.spec_from_file_location("dw_environment_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES = _load_names_module()


@dataclass(frozen=True)
class Environment:
    name: str
    database: str
    api_port: int
    edge_port: int
    unit: str
    api_logins: tuple[str, ...]


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="session")
def environments() -> list[Environment]:
    envs = NAMES.resolve(_yaml(INVENTORY / "group_vars" / "all" / "vars.yml")["dw_environments"])
    return [Environment(e["name"], e["database"], e["api_port"], e["edge_port"], e["unit"],
                        tuple(e["api_logins"].values())) for e in envs]


@pytest.fixture(scope="session")
def vault() -> dict:
    out = subprocess.run(
        ["ansible-vault", "view", "--vault-password-file", str(INVENTORY / "vault-password.txt"),
         str(INVENTORY / "group_vars" / "all" / "vault.yml")],
        check=True, capture_output=True, text=True,
    ).stdout
    return yaml.safe_load(out)


def api_key(vault: dict, env: Environment) -> str:
    key = vault["vault_ingest_api_keys"][env.name]
    return key if isinstance(key, str) else key[0]


@pytest.fixture(scope="session")
def address() -> dict[str, str]:
    """Inventory host -> its pinned address on the scenario's network."""
    platforms = _yaml(SCENARIO / "molecule.yml")["platforms"]
    return {p["name"]: p["ip"] for p in platforms}


def _host(name: str):
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="session")
def db1():
    return _host("db1")


@pytest.fixture(scope="session")
def api1():
    return _host("api1")


@pytest.fixture(scope="session")
def backup1():
    return _host("backup1")


@pytest.fixture(scope="session")
def client1():
    return _host("client1")


def psql(host, sql: str, db: str = "postgres") -> str:
    """SQL as postgres over db1's local socket; the rows, tab-free and trimmed."""
    return host.check_output(f"runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 -d {shlex.quote(db)} "
                             f"-c {shlex.quote(sql)}")


def run_playbook(playbook: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """ansible-playbook against the scenario's inventory, as molecule runs it."""
    env = os.environ | {
        "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(INVENTORY / "vault-password.txt"),
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(PROJECT / "playbooks" / playbook), *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )

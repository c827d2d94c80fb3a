"""Shared helpers for the testinfra checks: secrets from the local vault and psql inside the host."""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = PROJECT / "inventories" / "local"


def _role_default(role: str, name: str):
    return yaml.safe_load((PROJECT / "roles" / role / "defaults" / "main.yml").read_text())[name]


def _load_names_module():
    """The dw_environments role's filter plugin: the one place unit and role names are derived."""
    path = PROJECT / "roles" / "dw_environments" / "filter_plugins" / "dw_environments.py"
    spec = importlib.util.spec_from_file_location("dw_environment_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES = _load_names_module()
STANZA = _role_default("pgbackrest", "pgbackrest_stanza")
# Where each environment's env file lives on the API host: the old server's path, which its
# operators look for (a contract to hold, not a default to mirror).
API_CONFIG_DIR = "/etc/dw-api"
# pgBackRest inside the host, as the user that owns the cluster and the repositories.
PGBACKREST = f"runuser -u postgres -- pgbackrest --stanza={STANZA}"


@dataclass(frozen=True)
class Environment:
    name: str
    environment: str
    database: str
    api_port: int
    names: dict = field(compare=False, repr=False)

    @property
    def unit(self) -> str:
        return self.names["unit"]

    @property
    def env_file(self) -> str:
        return f"{API_CONFIG_DIR}/{self.name}.env"


def run_playbook(playbook: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from playbooks/ against the molecule instance, with the project's roles and
    the local inventory's vault; the output is returned, not checked."""
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


def _group_vars() -> dict:
    return yaml.safe_load((INVENTORY / "group_vars" / "all" / "vars.yml").read_text())


@pytest.fixture(scope="session")
def environments() -> list[Environment]:
    return [Environment(**{k: e[k] for k in ("name", "environment", "database", "api_port")},
                        names=NAMES.derived_names(e))
            for e in _group_vars()["dw_environments"]]


@pytest.fixture(scope="session")
def vault() -> dict:
    out = subprocess.run(
        ["ansible-vault", "view", "--vault-password-file", str(INVENTORY / "vault-password.txt"),
         str(INVENTORY / "group_vars" / "all" / "vault.yml")],
        check=True, capture_output=True, text=True,
    ).stdout
    return yaml.safe_load(out)


class Psql:
    """Runs SQL inside the container, as postgres over the socket or as a role over TCP."""

    def __init__(self, host):
        self.host = host

    def run(self, sql: str, db: str = "postgres", user: str | None = None,
            password: str | None = None):
        base = f"psql -X -A -t -v ON_ERROR_STOP=1 -d {shlex.quote(db)} -c {shlex.quote(sql)}"
        if user is None:
            cmd = f"runuser -u postgres -- {base}"
        else:
            cmd = (f"env PGPASSWORD={shlex.quote(password or '')} PGCONNECT_TIMEOUT=5 "
                   f"{base} -h 127.0.0.1 -U {shlex.quote(user)}")
        return self.host.run(cmd)

    def value(self, sql: str, db: str = "postgres", **kw) -> str:
        result = self.run(sql, db, **kw)
        assert result.rc == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture()
def psql(host) -> Psql:
    return Psql(host)


@pytest.fixture()
def active_api_login(host, environments) -> dict[str, str]:
    """Environment database -> the API login role (blue or green) that currently holds LOGIN."""
    out = host.check_output(
        "runuser -u postgres -- psql -X -A -t -c "
        + shlex.quote("SELECT rolname FROM pg_roles WHERE rolcanlogin")
    )
    can_login = set(out.split())
    return {env.database: login for env in environments for login in env.names["api_logins"].values()
            if login in can_login}

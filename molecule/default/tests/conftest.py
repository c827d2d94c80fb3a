"""Shared helpers for the testinfra checks: secrets from the local vault and psql inside the host."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = PROJECT / "inventories" / "local"
# pgBackRest inside the host, as the user that owns the cluster and the repositories.
PGBACKREST = "runuser -u postgres -- pgbackrest --stanza=main-cluster"


@dataclass(frozen=True)
class Environment:
    name: str
    environment: str
    database: str
    api_port: int


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
    return [Environment(**{k: e[k] for k in ("name", "environment", "database", "api_port")})
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
def active_api_login(host) -> dict[str, str]:
    """Environment database -> the API login role that currently holds LOGIN."""
    out = host.check_output(
        "runuser -u postgres -- psql -X -A -t -c "
        + shlex.quote("SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname ~ '_api_(blue|green)$'")
    )
    logins = out.split()
    return {login.rsplit("_api_", 1)[0]: login for login in logins}

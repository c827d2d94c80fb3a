"""Shared helpers for the testinfra checks: secrets from the local vault and psql inside the host."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))

from support import (
    NAMES,
    PGBACKREST,
    PROJECT,
    STANZA,
    api_key,
    inventory_environments,
    role_default,
    run_playbook,
    start_load,
    stop_load,
    vault,
    wait_for,
)

# Where each environment's env file lives on the API host: the old server's path, which its
# operators look for (a contract to hold, not a default to mirror).
API_CONFIG_DIR = "/etc/dw-api"
__all__ = [
    "NAMES",
    "PGBACKREST",
    "PROJECT",
    "STANZA",
    "api_key",
    "role_default",
    "run_playbook",
    "start_load",
    "stop_load",
    "vault",
    "wait_for",
]


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


@pytest.fixture(scope="session")
def environments() -> list[Environment]:
    return [
        Environment(**{k: e[k] for k in ("name", "environment", "database", "api_port")}, names=e)
        for e in inventory_environments()
    ]


class Psql:
    """Runs SQL inside the container, as postgres over the socket or as a role over TCP."""

    def __init__(self, host):
        self.host = host

    def run(self, sql: str, db: str = "postgres", user: str | None = None, password: str | None = None):
        base = f"psql -X -A -t -v ON_ERROR_STOP=1 -d {shlex.quote(db)} -c {shlex.quote(sql)}"
        if user is None:
            cmd = f"runuser -u postgres -- {base}"
        else:
            cmd = (
                f"env PGPASSWORD={shlex.quote(password or '')} PGCONNECT_TIMEOUT=5 "
                f"{base} -h 127.0.0.1 -U {shlex.quote(user)}"
            )
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
        "runuser -u postgres -- psql -X -A -t -c " + shlex.quote("SELECT rolname FROM pg_roles WHERE rolcanlogin")
    )
    can_login = set(out.split())
    return {
        env.database: login for env in environments for login in env.names["api_logins"].values() if login in can_login
    }


def refresh_backup_metrics(host) -> float:
    """Rewrites the backup metrics from the repositories as they are now and returns when.

    A failed backup unit starts dw-backup-metrics through dw-unit-failed@ (OnFailure=); a test
    that broke a repository on purpose may have repaired it while that run was still reading it.
    Waiting for such a run to end and starting a fresh one leaves metrics that describe the
    repaired repositories, not the fault the test injected.
    """
    deadline = time.monotonic() + 300
    while host.run("systemctl is-active dw-backup-metrics.service").stdout.strip() in ("activating", "deactivating"):
        assert time.monotonic() < deadline, "dw-backup-metrics.service did not finish within 300 s"
        time.sleep(1)
    started = time.time()
    host.check_output("systemctl start dw-backup-metrics.service")
    return started

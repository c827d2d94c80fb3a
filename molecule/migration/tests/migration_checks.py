"""What the migration scenario's tests share: the databases, where the writer and the cutover
keep their records, and psql as postgres inside a host."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))

from support import api_key, environments, inventory_environments, plain_output, run_playbook, vault

__all__ = ["api_key", "environments", "plain_output", "run_playbook", "vault"]

DATABASES = [env["database"] for env in inventory_environments()]
# Where the writer on mig-legacy logs what it was told was committed (molecule/migration/prepare.yml).
WRITER_DIR = "/var/lib/legacy-writer"
# Where the migration role keeps its markers on the new server.
STATE_DIR = "/var/lib/dw-migration"


def sql(host, database: str, query: str) -> str:
    """One query as postgres over the local socket; unaligned rows, one per line."""
    cmd = (
        f"runuser -u postgres -- psql -X -A -t -q -v ON_ERROR_STOP=1 -d {shlex.quote(database)} -c {shlex.quote(query)}"
    )
    return host.check_output(cmd)

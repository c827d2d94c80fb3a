"""The migration scenario's hosts: mig-server (the verifier's host) and mig-legacy (the old server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parent))

from migration_checks import DATABASES, STATE_DIR, environments, vault

__all__ = ["environments", "vault"]


@pytest.fixture(scope="session")
def legacy():
    return testinfra.get_host("podman://mig-legacy")


@pytest.fixture()
def markers(host) -> dict[str, dict]:
    """What the cutover recorded per database on the new server."""
    return {db: json.loads(host.file(f"{STATE_DIR}/{db}.json").content_string) for db in DATABASES}

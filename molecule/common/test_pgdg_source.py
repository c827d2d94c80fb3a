"""PostgreSQL from the PGDG source, as inventories/production installs it: in a scenario that converges
with molecule/common/group_vars/pgdg.yml and imports molecule/common/pgdg-mirror.yml in its prepare,
every database host names the test mirror in its PGDG source, apt verifies the mirror's signature
with the key the role fetched, and the installed server is a version the mirror lists.

A scenario adds these tests with a link in its tests/ directory:
    ln -s ../../common/test_pgdg_source.py molecule/<scenario>/tests/test_pgdg_source.py
The hosts come from molecule's inventory (groups db_servers and pgdg_mirror)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import testinfra
import yaml

OVERLAY = yaml.safe_load((Path(__file__).resolve().parent / "group_vars" / "pgdg.yml").read_text())
SOURCES_LIST = "/etc/apt/sources.list.d/pgdg.list"
KEY = "/usr/share/keyrings/pgdg.asc"


def _group_hosts(inventory: object, group: str) -> list[str]:
    """The hosts of a group anywhere in a YAML inventory (top-level or under children)."""
    found: list[str] = []
    if isinstance(inventory, dict):
        for name, value in inventory.items():
            if name == group and isinstance(value, dict):
                found.extend(value.get("hosts") or {})
            found.extend(_group_hosts(value, group))
    return sorted(set(found))


def _inventory() -> dict:
    path = os.environ.get("MOLECULE_INVENTORY_FILE")
    return yaml.safe_load(Path(path).read_text()) if path else {}


INVENTORY = _inventory()
DATABASE_HOSTS = _group_hosts(INVENTORY, "db_servers")
MIRRORS = _group_hosts(INVENTORY, "pgdg_mirror")
pytestmark = pytest.mark.skipif(not (DATABASE_HOSTS and MIRRORS), reason="no db_servers and pgdg_mirror hosts")

MIRROR_URL = f"http://{MIRRORS[0]}:{OVERLAY['pgdg_mirror_port']}" if MIRRORS else ""
SERVER_PACKAGE = f"postgresql-{OVERLAY['pgdg_mirror_postgresql_version']}"


def _codename(host) -> str:
    return host.check_output(". /etc/os-release && echo $VERSION_CODENAME")


def _installed_sources(policy: str) -> str:
    """apt-cache policy's source lines under the installed version (marked ***)."""
    match = re.search(r"^ \*\*\* .*\n((?:^ {8}.*\n?)*)", policy, re.MULTILINE)
    return match.group(1) if match else ""


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_the_pgdg_source_names_the_mirror_with_its_key(name):
    host = testinfra.get_host(f"podman://{name}")
    lines = [line.strip() for line in host.file(SOURCES_LIST).content_string.splitlines() if line.strip()]
    assert f"deb [signed-by={KEY}] {MIRROR_URL} {_codename(host)}-pgdg main" in lines, lines
    assert host.file(KEY).content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_the_installed_server_is_a_version_the_mirror_lists(name):
    host = testinfra.get_host(f"podman://{name}")
    assert host.package(SERVER_PACKAGE).is_installed
    policy = host.check_output(f"apt-cache policy {SERVER_PACKAGE}")
    assert f"{MIRROR_URL} {_codename(host)}-pgdg/main " in _installed_sources(policy), policy


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_apt_verifies_the_mirrors_signature(name):
    """An update of the PGDG source alone (the other lists kept): signed by the key the role fetched,
    not merely reachable."""
    host = testinfra.get_host(f"podman://{name}")
    update = host.run(
        f"apt-get update -o Dir::Etc::sourcelist={SOURCES_LIST} -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
    )
    output = update.stdout + update.stderr
    assert update.rc == 0, output
    for refusal in ("NO_PUBKEY", "not signed", "GPG error", "EXPKEYSIG", "BADSIG", "W:", "E:"):
        assert refusal not in output, output
    assert re.search(rf"^(Get|Hit):\d+ {re.escape(MIRROR_URL)} {_codename(host)}-pgdg InRelease", output, re.M), output
    # The signed index apt keeps, with the mirror's own Release fields.
    lists = host.check_output(f"ls /var/lib/apt/lists/ | grep -F _dists_{_codename(host)}-pgdg_InRelease")
    stored = host.file(f"/var/lib/apt/lists/{lists.splitlines()[0]}").content_string
    assert stored.startswith("-----BEGIN PGP SIGNED MESSAGE-----"), stored[:200]
    assert "Origin: dw-platform test PGDG mirror" in stored, stored[:600]

"""A bad dw_environments stops site.yml before any host is contacted, naming the entry and the rule.

Each case copies the local inventory, points its host at a container that does not exist (so a
run that got past the check could not change anything, and would fail differently), breaks one
rule, and runs `site.yml --check`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "inventories" / "local"


def _inventory(tmp_path: Path, change) -> Path:
    inventory = tmp_path / "inventory"
    shutil.copytree(LOCAL, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    hosts["all"]["vars"]["ansible_host"] = "dw-no-such-container"
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    group_vars = inventory / "group_vars" / "all" / "vars.yml"
    settings = yaml.safe_load(group_vars.read_text())
    change(settings["dw_environments"])
    group_vars.write_text(yaml.safe_dump(settings))
    return inventory


def _run(inventory: Path, playbook: str = "site.yml") -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(LOCAL / "vault-password.txt"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "--check", str(ROOT / playbook)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# (case, entry index, what changes in it, the rule the message must state after the entry's label)
CASES = [
    ("port used twice", 1, {"api_port": 8000}, "api_port 8000 is already used by dw_environments[0] (prod)"),
    ("port out of range", 2, {"api_port": 80002}, "api_port 80002 must be a whole number from 1024 to 65535"),
    (
        "database shared",
        2,
        {"database": "cosc471_prod"},
        "database 'cosc471_prod' is already used by dw_environments[0]",
    ),
    ("name with a space", 1, {"name": "de v"}, "name 'de v' must match"),
    ("PostgreSQL's port", 0, {"api_port": 5432}, "api_port 5432 is already used by PostgreSQL (postgresql_port)"),
    ("name used twice", 2, {"name": "dev"}, "name 'dev' is already used by dw_environments[1] (dev)"),
    (
        "edge port on an API port",
        2,
        {"edge_port": 8001},
        "edge_port 8001 is already used by dw_environments[1] (dev) api_port",
    ),
]


@pytest.mark.parametrize(("index", "change", "rule"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_broken_rule_stops_the_run_before_any_host_is_contacted(tmp_path, index, change, rule):
    name = change.get("name", ["prod", "dev", "test"][index])
    message = f"dw_environments[{index}] ({name}): {rule}"
    result = _run(_inventory(tmp_path, lambda envs: envs[index].update(change)))
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert message in output, output[-3000:]
    # Only the check ran: no facts were gathered and no later play started.
    assert "Gathering Facts" not in output and "PLAY [Database servers]" not in output, output[-3000:]
    assert "UNREACHABLE" not in output


def test_the_local_inventory_passes_the_check(tmp_path):
    result = _run(_inventory(tmp_path, lambda envs: None), "playbooks/check-inventory.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_a_shared_ca_directory_that_is_missing_stops_the_run(tmp_path):
    """dw_pki_ca_dir set to a shared place that is not there (a share not mounted, a typo) would get a
    second CA: the check stops the run, naming the directory; the default next to the inventory only warns."""
    inventory = _inventory(tmp_path, lambda envs: None)
    shared = tmp_path / "shared-pki"
    group_vars = inventory / "group_vars" / "all" / "vars.yml"
    group_vars.write_text(group_vars.read_text() + f"dw_pki_ca_dir: {shared}\n")
    result = _run(inventory, "playbooks/check-inventory.yml")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-3000:]
    assert f"dw_pki_ca_dir is {shared}, which is not a directory on this controller" in output, output[-3000:]
    assert f"install -d -m 0700 {shared}" in output
    assert not shared.exists()
    assert "UNREACHABLE" not in output

    shared.mkdir(mode=0o700)
    result = _run(inventory, "playbooks/check-inventory.yml")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output[-3000:]
    assert f"WARNING: no private CA at {shared}/dw-platform-ca.crt on this controller" in output, output[-3000:]

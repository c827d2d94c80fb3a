"""The firewall never locks out the SSH path a converge runs over: when the controller's address
(from SSH_CLIENT) is outside firewall_admin_networks, the ruleset the role renders still admits it
on the SSH port. Rendered by Ansible itself from the role's own template, defaults and vars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "firewall"

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{defaults}, {vars}]
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - ansible.builtin.template:
        src: {template}
        dest: {dest}
        mode: "0600"
"""


def _render(tmp_path: Path, ssh_client: str) -> str:
    dest = tmp_path / "nftables.conf"
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        PLAYBOOK.format(
            defaults=ROLE / "defaults/main.yml",
            vars=ROLE / "vars/main.yml",
            template=ROLE / "templates/nftables.conf.j2",
            dest=dest,
        )
    )
    env = os.environ | {
        # The platform's rules read the edge's ports through the dw_environments role's filter.
        "ANSIBLE_FILTER_PLUGINS": f"{ROLE / 'filter_plugins'}:{ROOT / 'roles/dw_environments/filter_plugins'}",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    # Extra vars sit above the role's defaults and vars files, as an inventory's settings and the
    # preflight's fact (the controller's SSH source, parsed from SSH_CLIENT) do in a real run.
    overrides = {
        "firewall_admin_networks": ["10.0.0.0/24"],
        "_firewall_controller": f"{{{{ '{ssh_client}' | firewall_ssh_client }}}}",
        # localhost is in no group of the platform, so its own rules come out empty.
        "dw_environments": [{"name": "prod", "environment": "production", "database": "dw_prod", "api_port": 8000}],
    }
    result = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-e", json.dumps(overrides), str(playbook)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return dest.read_text()


def _admin_v4(ruleset: str) -> str:
    return ruleset.split("set admin_v4 {", 1)[1].split("}", 1)[0] + "}"


@pytest.mark.parametrize(
    ("ssh_client", "admitted"),
    [
        ("192.0.2.10 52100 22", ["10.0.0.0/24", "192.0.2.10"]),  # outside the admin networks: added
        ("10.0.0.7 52100 22", ["10.0.0.0/24"]),  # inside them already: nothing to add
    ],
)
def test_the_controllers_ssh_source_stays_admitted(tmp_path, ssh_client, admitted):
    ruleset = _render(tmp_path, ssh_client)
    admin = _admin_v4(ruleset)
    for source in admitted:
        assert source in admin, admin
    if len(admitted) == 1:
        assert "192.0.2." not in admin
    assert 'tcp dport 22 ip saddr @admin_v4 counter accept comment "ssh"' in ruleset
    assert "policy drop" in ruleset

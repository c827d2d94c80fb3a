"""The monitoring role refuses an inventory whose repository host it cannot scrape: a backup host
whose node exporter listens on loopback, on another host than Prometheus, would leave its backups
unwatched; and one without the basic-auth passwords, naming the variable that is missing. Run by
Ansible itself: the role's preflight tasks, on a throwaway inventory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

INVENTORY = """
all:
  children:
    db_servers: {hosts: {db1: {}}}
    api_servers: {hosts: {api1: {}}}
    backup_servers: {hosts: {backup1: {}}}
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    monitoring_web_password: a-test-password-1
    node_exporter_web_password: a-test-password-2
    postgres_exporter_web_password: a-test-password-3
"""

PLAYBOOK = """
- hosts: db1
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: monitoring
        tasks_from: preflight
"""


def _preflight(tmp_path: Path, backup1_vars: dict) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    (tmp_path / "host_vars").mkdir(exist_ok=True)
    (tmp_path / "host_vars" / "backup1.yml").write_text(json.dumps(backup1_vars))
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PLAYBOOK)
    return _ansible_playbook(tmp_path, "-i", str(inventory), str(playbook))


def _ansible_playbook(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from this venv with the project's roles, run in tmp_path; output returned."""
    env = os.environ | {
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["ansible-playbook", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("backup1_vars", [{}, {"node_exporter_listen_address": "127.0.0.1"}])
def test_a_repository_host_on_loopback_is_refused_by_name(tmp_path, backup1_vars):
    result = _preflight(tmp_path, backup1_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "backup1: node_exporter_listen_address is loopback" in output, output[-2000:]
    assert "Prometheus on db1" in output


def test_a_repository_host_on_its_address_passes(tmp_path):
    result = _preflight(tmp_path, {"node_exporter_listen_address": "10.89.42.13"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]


@pytest.mark.parametrize(
    "variable", ["monitoring_web_password", "node_exporter_web_password", "postgres_exporter_web_password"]
)
def test_a_missing_password_is_refused_by_name(tmp_path, variable):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(json.dumps({variable: ""}))
    result = _preflight(tmp_path, {"node_exporter_listen_address": "10.89.42.13"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    named = {
        "monitoring_web_password": "monitoring_web_password",
        "node_exporter_web_password": "monitoring_scrape_node_password",
        "postgres_exporter_web_password": "monitoring_scrape_postgres_password",
    }[variable]
    assert f"{named} is missing or shorter than 12 characters" in output, output[-2000:]


@pytest.mark.parametrize("role", ["node_exporter", "postgres_exporter"])
def test_an_exporter_without_its_password_stops_before_any_change(tmp_path, role):
    """The exporter roles' first task: no password, no run (in check mode, so nothing could change here)."""
    (tmp_path / "hosts.yml").write_text("all: {hosts: {db1: {ansible_connection: local}}}\n")
    (tmp_path / "play.yml").write_text(
        "- hosts: db1\n  gather_facts: false\n  vars: {postgresql_cluster: {}}\n"
        f"  tasks:\n    - ansible.builtin.include_role: {{name: {role}}}\n"
    )
    result = _ansible_playbook(
        tmp_path, "--check", "-i", "hosts.yml", "-e", "ansible_python_interpreter=" + sys.executable, "play.yml"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert f"{role}_web_password is missing or shorter than 12 characters" in output, output[-2000:]
    assert "changed=0" in output and "Install the" not in output, output[-2000:]

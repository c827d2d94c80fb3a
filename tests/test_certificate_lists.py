"""The dw_pki role's certificate_list entry point, run by Ansible itself against this host with the
list directory in tmp_path: one path a line (empty items dropped, duplicates once), idempotent, a
--check run on a fresh host writes nothing, and dw-certificate-metrics reads the list it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "roles" / "node_exporter" / "files" / "dw-certificate-metrics"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the list is written root:root, as on a host")

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: dw_pki
        tasks_from: certificate_list
      vars:
        dw_pki_certificate_list_name: pgbackrest
        dw_pki_certificate_list_paths: {paths}
"""


def _list(tmp_path: Path, paths: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(paths=paths))
    env = os.environ | {
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    argv = ["ansible-playbook", "-c", "local", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
    argv += ["-e", f"dw_pki_certificate_list_dir={tmp_path / 'lists'}", *args, "play.yml"]
    return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)


def _recap(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    return next(line for line in output.splitlines() if line.startswith("localhost ") and "ok=" in line)


def test_the_list_is_one_path_a_line_and_idempotent(tmp_path: Path) -> None:
    cert = tmp_path / "host.crt"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
            *("-keyout", str(tmp_path / "host.key"), "-out", str(cert), "-days", "30", "-subj", "/CN=backup1"),
        ],
        check=True,
        capture_output=True,
    )
    paths = [str(cert), "", str(tmp_path / "missing-ca.crt"), str(cert)]
    # A first --check run: the directory would be created, nothing is written.
    assert "changed=1 " in _recap(_list(tmp_path, paths, "--check"))
    assert not (tmp_path / "lists").exists()
    assert "changed=2 " in _recap(_list(tmp_path, paths))
    written = tmp_path / "lists" / "pgbackrest.list"
    assert written.read_text().splitlines() == [
        "# Managed by Ansible (pgbackrest role): the certificates it installed or was given.",
        str(cert),
        str(tmp_path / "missing-ca.crt"),
    ]
    assert oct(written.stat().st_mode & 0o777) == "0o644"
    assert "changed=0 " in _recap(_list(tmp_path, paths))
    # The collector reads what the role wrote.
    output = tmp_path / "dw_certificates.prom"
    subprocess.run(
        [sys.executable, str(COLLECTOR), f"--lists={tmp_path / 'lists'}", f"--output={output}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    text = output.read_text()
    assert f'dw_certificate_not_after_seconds{{path="{cert}",subject="CN=backup1",owner="pgbackrest"}} ' in text
    assert f'dw_certificate_read_ok{{path="{tmp_path / "missing-ca.crt"}",owner="pgbackrest"}} 0' in text

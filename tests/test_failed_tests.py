"""scripts/failed-tests: what CI's tail says when a molecule scenario fails.

A real pytest run writes the JUnit file, as the verifier does; the summary names the failed test
and carries its assertion, and says so when there is no file (the scenario failed before verify)
or no failure in it (it failed after verify).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "failed-tests"

SAMPLE = """
def test_kept():
    assert True


def test_lost_writes():
    lost = [17, 18]
    assert not lost, f"acknowledged writes missing after the failover: {lost}"
"""


def _summary(report: Path) -> str:
    out = subprocess.run([sys.executable, SCRIPT, str(report), "ha"], capture_output=True, text=True, check=True)
    return out.stdout


def _junit(tmp_path: Path, source: str) -> Path:
    (tmp_path / "test_sample.py").write_text(source)
    report = tmp_path / "ha-verify.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path), f"--junitxml={report}"],
        capture_output=True,
        cwd=tmp_path,
        check=False,
    )
    return report


def test_names_the_failed_test_and_its_assertion(tmp_path):
    summary = _summary(_junit(tmp_path, SAMPLE))
    assert "ha: FAILURE test_sample::test_lost_writes" in summary
    assert "acknowledged writes missing after the failover: [17, 18]" in summary
    assert "test_kept" not in summary


def test_says_when_the_scenario_failed_before_verify(tmp_path):
    assert "failed before verify" in _summary(tmp_path / "missing.xml")


def test_says_when_every_test_passed(tmp_path):
    summary = _summary(_junit(tmp_path, "def test_kept():\n    assert True\n"))
    assert "every test passed" in summary


PLAYBOOK = """
- name: A converge that breaks
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: A failure the play expects
      ansible.builtin.command: /bin/false
      changed_when: false
      ignore_errors: true
    - name: Render the pgBackRest configuration
      ansible.builtin.fail:
        msg: "pgbackrest_repo_host is not set"
"""


def _framed_ansible_log(tmp_path: Path) -> Path:
    """A real ansible-playbook run's colour output, in the gutter molecule draws around it."""
    (tmp_path / "converge.yml").write_text(PLAYBOOK)
    run = subprocess.run(
        [Path(sys.executable).with_name("ansible-playbook"), "-i", "localhost,", "converge.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"ANSIBLE_FORCE_COLOR": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    log = tmp_path / "ha.log"
    log.write_text("".join(f"  \x1b[2m│\x1b[0m {line}\n" for line in run.stdout.splitlines()))
    return log


def test_names_the_task_that_failed_converge(tmp_path):
    log = _framed_ansible_log(tmp_path)
    out = subprocess.run(
        [sys.executable, SCRIPT, str(tmp_path / "missing.xml"), "ha", str(log)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "failed before verify" in out
    assert "ha: task failed: TASK [Render the pgBackRest configuration]" in out
    assert "pgbackrest_repo_host is not set" in out
    assert "A failure the play expects" not in out, "an ignored failure is not why the scenario failed"

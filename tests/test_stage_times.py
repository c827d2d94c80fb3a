"""scripts/stage-times: each molecule stage's time, read from a scenario's log as molecule writes it
(colour codes, the box-drawing gutter around Ansible's output, the timer callback's line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "stage-times"

# Shaped as a real log: a test in verify prints a converge's recap (with its timer line) before
# pytest's summary, and the second check never reached its recap (it failed).
LOG = """\
INFO     ha \u279c converge: Executing
  \x1b[2m\u2502\x1b[0m PLAY RECAP *****
  \x1b[2m\u2502\x1b[0m Playbook run took 0 days, 0 hours, 13 minutes, 8 seconds
INFO     ha \u279c idempotence: Executing
  \u2502 Playbook run took 0 days, 1 hours, 0 minutes, 5 seconds
INFO     ha \u279c verify: Executing
INFO     ha \u279c verify: Executing Testinfra tests found in /tmp/x/molecule/ha/tests/...
  \u2502 PLAY RECAP
  \u2502 Playbook run took 0 days, 0 hours, 7 minutes, 21 seconds
  \u2502 ================== 74 passed, 1 xfailed in 1023.24s (0:17:03)
INFO     ha \u279c check: Executing
  \u2502 fatal: [ha-db1]: FAILED!
"""


def _run(tmp_path: Path, text: str) -> str:
    log = tmp_path / "ha.log"
    log.write_text(text)
    return subprocess.run([sys.executable, SCRIPT, str(log), "ha"], capture_output=True, text=True, check=True).stdout


def test_each_stage_with_its_own_time(tmp_path):
    assert _run(tmp_path, LOG).strip() == "ha stage times: converge 13:08, idempotence 60:05, verify 17:03"


def test_a_log_without_stages_says_so(tmp_path):
    assert _run(tmp_path, "INFO nothing ran\n").strip() == "ha stage times: none recorded"

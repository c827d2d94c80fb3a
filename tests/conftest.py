"""Shared helpers of the repository-level tests (run from the top: python -m pytest -q tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

# dw_textfile (templates/dw_textfile.py), which the metric scripts import: on a host from the
# directory each script puts on sys.path, here from templates/, for the scripts these tests load
# (sys.path) and for those they run in a subprocess (PYTHONPATH).
TEXTFILE_LIBRARY = str(Path(__file__).resolve().parent.parent / "templates")
sys.path.insert(0, TEXTFILE_LIBRARY)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TEXTFILE_LIBRARY, os.environ.get("PYTHONPATH")]))


ROOT = Path(__file__).resolve().parent.parent


def ansible_playbook(*args: str, timeout: int = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook with these arguments, run from the repository's top with its roles, the venv's
    ansible on PATH, no colours, and env added to the environment; never raises on failure."""
    return subprocess.run(
        ["ansible-playbook", *args],
        cwd=ROOT,
        env=os.environ
        | {
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        | env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def load_source(path: Path, name: str) -> ModuleType:
    """The Python file at path as a module named name: a role's script without the .py
    extension (dw-status, dw-backup-verify, ...) or a role's filter plugin."""
    loader = SourceFileLoader(name, str(path))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The directory of the Python running the tests (the venv's bin/, with ansible-galaxy beside it)."""
    return Path(sys.executable).parent

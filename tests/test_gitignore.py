"""Secrets an operator keeps beside the checkout are never committed by accident."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ignored(path: str) -> bool:
    # --no-index: judge the path by the patterns alone, whether or not such a file is tracked.
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
    return result.returncode == 0


@pytest.mark.parametrize(
    "path",
    [
        "inventories/production/vault-password.txt",
        "inventories/staging/vault-password",
        "vault-password.txt",
        "inventories/production/.vault_pass",
        "inventories/production/group_vars/all/.vault_pass.txt",
        "ops/prod.vault-password",
        "inventories/production/vault-pass.txt",
        "inventories/production/.pki/dw-platform-ca.key",
    ],
)
def test_vault_password_files_and_the_ca_are_ignored(path: str) -> None:
    assert _ignored(path), path


@pytest.mark.parametrize(
    "path",
    [
        # The local demo's throwaway password is committed on purpose: it protects only test secrets.
        "inventories/local/vault-password.txt",
        "inventories/production/group_vars/all/vault.yml",
        "inventories/production/group_vars/all/vars.yml",
        "scripts/new-vault",
        # The dated history of bench rounds; the bench's own output beside it stays ignored.
        "bench/results/2026-11-28-direct-path.md",
    ],
)
def test_what_belongs_in_git_is_not_ignored(path: str) -> None:
    assert not _ignored(path), path


@pytest.mark.parametrize(
    "path", ["bench/results/results.md", "bench/results/results.json", "bench/results/service.log"]
)
def test_the_bench_output_is_ignored(path: str) -> None:
    assert _ignored(path), path

"""The pgbackrest role's unit names (filter pgbackrest_unit), which dw_status and monitoring read
through the same filter instead of spelling them out."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from conftest import load_source

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "roles" / "pgbackrest" / "filter_plugins" / "pgbackrest_units.py"

units = load_source(PLUGIN, "pgbackrest_units")
# How a unit name looks when written out rather than asked of the filter.
SPELLED_OUT = ("pgbackrest-{{", "pgbackrest-verify-", "pgbackrest-drill-", "'pgbackrest-'")


@pytest.mark.parametrize(
    ("kind", "key", "name"),
    [
        ("backup", "daily", "pgbackrest-daily"),
        ("backup", "weekly-full-repo2", "pgbackrest-weekly-full-repo2"),
        ("verify", 2, "pgbackrest-verify-repo2"),
        ("verify", "1", "pgbackrest-verify-repo1"),
        ("drill", 3, "pgbackrest-drill-repo3"),
        ("verify", None, "pgbackrest-verify-repo"),
        ("drill", None, "pgbackrest-drill-repo"),
        ("server", None, "pgbackrest-server"),
    ],
)
def test_names(kind: str, key: object, name: str) -> None:
    assert units.pgbackrest_unit(kind, key) == name


@pytest.mark.parametrize(
    ("kind", "key"),
    [("backup", None), ("backup", ""), ("backup", "server"), ("backup", "verify-repo1"), ("backup", "a/b"),
     ("verify", "x"), ("drill", "1a"), ("server", 1), ("restore", 1)],
)  # fmt: skip
def test_what_names_no_unit_fails(kind: str, key: object) -> None:
    with pytest.raises(AnsibleFilterError, match="pgbackrest_unit"):
        units.pgbackrest_unit(kind, key)


def test_the_roles_that_read_the_names_hold_the_same_filter() -> None:
    for role in ("dw_status", "monitoring"):
        link = ROOT / "roles" / role / "filter_plugins" / "pgbackrest_units.py"
        assert link.is_symlink() and link.resolve() == PLUGIN, link


def test_no_role_spells_a_unit_name_out() -> None:
    """Outside prose (comments, READMEs, argument specs), every unit name comes from the filter."""
    found = []
    for path in sorted((ROOT / "roles").rglob("*")):
        if path.suffix not in {".yml", ".j2"} or path.name == "argument_specs.yml":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0] if path.suffix == ".yml" else line
            if any(name in code for name in SPELLED_OUT):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)

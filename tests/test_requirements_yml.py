"""requirements.yml lists every collection the repository uses, at ranges the installed ones satisfy."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

REPO_ROOT = Path(__file__).resolve().parent.parent

# Where the repository uses collections: plays, roles, scenarios, inventories and the config.
_SCANNED = ["site.yml", "playbooks", "roles", "molecule", "inventories", "ansible.cfg"]
_YAML_SUFFIXES = {".yml", ".yaml"}
# Part of ansible-core itself, never installed from Galaxy.
_CORE = {"ansible.builtin", "ansible.legacy"}
_NAME = r"[a-z][a-z0-9_]*"
_FQCN = re.compile(rf"(?<![\w.])({_NAME})\.({_NAME})\.([a-z_][a-z0-9_]*)(?![\w])")
_FQCN_KEY = re.compile(rf"^{_NAME}\.{_NAME}\.[a-z_][a-z0-9_]*$")


def _requirements() -> dict[str, str]:
    data = yaml.safe_load((REPO_ROOT / "requirements.yml").read_text())
    assert isinstance(data, dict) and isinstance(data.get("collections"), list), (
        "requirements.yml must be a mapping with a 'collections' list"
    )
    wanted: dict[str, str] = {}
    for entry in data["collections"]:
        name, version = (entry, "*") if isinstance(entry, str) else (entry["name"], str(entry.get("version", "*")))
        assert name not in wanted, f"requirements.yml lists {name} twice"
        wanted[name] = version
    return wanted


REQUIREMENTS = _requirements()


@pytest.fixture(scope="session")
def installed(venv_bin: Path) -> dict[str, str]:
    """Installed collection -> version, as ansible resolves it (first in the search path wins)."""
    galaxy = venv_bin / "ansible-galaxy"
    command = str(galaxy) if galaxy.exists() else shutil.which("ansible-galaxy")
    assert command, "ansible-galaxy is neither beside the test's Python nor on PATH"
    out = subprocess.run(
        [command, "collection", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    ).stdout
    found: dict[str, str] = {}
    for collections in json.loads(out).values():
        for name, info in collections.items():
            found.setdefault(name, str(info.get("version", "*")))
    return found


def _specifier(version_range: str) -> SpecifierSet | None:
    """Galaxy's range syntax is PEP 440's comparison subset, plus '*' for any version."""
    if version_range.strip() == "*":
        return None
    return SpecifierSet(version_range.replace(" ", ""))


@pytest.mark.parametrize("name", sorted(REQUIREMENTS))
def test_listed_collection_is_installed_in_range(name: str, installed: dict[str, str]) -> None:
    wanted = REQUIREMENTS[name]
    assert name in installed, f"{name} ({wanted}) is listed in requirements.yml but not installed"
    try:
        spec = _specifier(wanted)
    except InvalidSpecifier:
        pytest.fail(f"{name}: requirements.yml range {wanted!r} is not a valid version range")
    if spec is None:
        return
    try:
        have = Version(installed[name])
    except InvalidVersion:
        pytest.fail(f"{name}: installed version {installed[name]!r} is not a version")
    assert spec.contains(have, prereleases=True), (
        f"{name} {have} is installed, outside requirements.yml's range {wanted}"
    )


def _files() -> Iterator[Path]:
    for entry in _SCANNED:
        path = REPO_ROOT / entry
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _YAML_SUFFIXES)


def _keys(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str):
                yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def _namespaces() -> set[str]:
    """Namespaces of the installed collections: a.b.c text counts as a collection reference only for these."""
    namespaces = set()
    for root in {Path(p) for p in importlib.import_module("ansible_collections").__path__}:
        namespaces |= {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("_")}
    return namespaces


def _used() -> dict[str, set[str]]:
    """namespace.collection -> files using it.

    Any a.b.c text whose namespace is an installed one (modules, lookups, filters, callbacks,
    connections, in keys, values or Jinja) counts, and so does any task key shaped like a FQCN, so
    a module from a collection that is not installed at all is caught too.
    """
    namespaces = _namespaces()
    used: dict[str, set[str]] = {}
    for path in _files():
        text = path.read_text(errors="replace")
        names = {f"{m[1]}.{m[2]}" for m in _FQCN.finditer(text) if m[1] in namespaces}
        if path.suffix in _YAML_SUFFIXES:
            try:
                documents = list(yaml.safe_load_all(text))
            except yaml.YAMLError:
                documents = []  # vault files and the like; the text scan above still applies
            names |= {k.rsplit(".", 1)[0] for k in _keys(documents) if _FQCN_KEY.match(k)}
        for name in names - _CORE:
            used.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    return used


def test_scan_finds_collections() -> None:
    """Guards the scan itself: the repository certainly uses community.postgresql modules."""
    assert "community.postgresql" in _used()


def test_every_used_collection_is_listed() -> None:
    missing = {name: files for name, files in _used().items() if name not in REQUIREMENTS}
    assert not missing, "used but not listed in requirements.yml: " + "; ".join(
        f"{name} (in {', '.join(sorted(files))})" for name, files in sorted(missing.items())
    )

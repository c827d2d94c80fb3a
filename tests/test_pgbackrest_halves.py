"""roles/pgbackrest's two halves stay apart (issue #25): backup set-up, which site.yml runs, never
reaches the proof, restore and recovery task files, which only their playbooks run. The split is
drawn in the role's README (meta/argument_specs.yml, main's description); this test reads the
task files' import_tasks / include_tasks edges and checks the README's lists against the files."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[1] / "roles" / "pgbackrest"
TASKS = ROLE / "tasks"

SHARED = {"cluster_facts", "verify_script"}
SETUP = {"main", "member", "install", "config", "config_files", "tls_server", "stanza", "timers",
         "verify_schedule", "drill_schedule", "drill_timers"}  # fmt: skip
RECOVERY = {"verify", "restore", "restore_single", "restore_patroni", "drill", "scratch",
            "scratch_remove", "recover", "recover_swap"}  # fmt: skip
SETUP_ENTRY_POINTS = {"main", "member"}


def _own_files(node: object) -> set[str]:
    """Task files of this role that a tasks file imports or includes (tasks_from of other roles is not ours)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
            target = node.get(key)
            if isinstance(target, dict):
                target = target.get("file")
            if isinstance(target, str):
                found.add(Path(target).stem)
        for value in node.values():
            found |= _own_files(value)
    elif isinstance(node, list):
        for value in node:
            found |= _own_files(value)
    return found


def _edges() -> dict[str, set[str]]:
    return {path.stem: _own_files(yaml.safe_load(path.read_text())) for path in TASKS.glob("*.yml")}


def test_every_task_file_is_in_one_half():
    files = set(_edges())
    assert files == SHARED | SETUP | RECOVERY, {
        "in no half": sorted(files - SHARED - SETUP - RECOVERY),
        "listed but missing": sorted((SHARED | SETUP | RECOVERY) - files),
    }
    assert not (SETUP & RECOVERY) and not (SHARED & (SETUP | RECOVERY))


def test_set_up_never_reaches_recovery():
    edges = _edges()
    seen: set[str] = set()
    todo = list(SETUP_ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(edges.get(name, ()))
    assert not seen & RECOVERY, sorted(seen & RECOVERY)


def _names(phrase: str) -> set[str]:
    return set(re.split(r",\s*|\s+and\s+", phrase.strip()))


def test_the_readme_draws_the_same_halves():
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    text = " ".join(" ".join(spec["argument_specs"]["main"]["description"]).split())
    setup, recovery = (_names(group) for group in re.findall(r"\(tasks ([a-z_, ]+)\)", text))
    setup_entries, recovery_entries = (
        _names(group) for group in re.findall(r"the entry points ([a-z_, ]+?)\s\(", text)
    )
    assert (setup, recovery) == (SETUP - SETUP_ENTRY_POINTS, RECOVERY)
    assert setup_entries == SETUP_ENTRY_POINTS
    assert recovery_entries == set(spec["argument_specs"]) - SETUP_ENTRY_POINTS
    assert recovery_entries <= RECOVERY

"""The ingest_api role's release id lookup: deterministic, and sensitive to exactly what is released."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import lookup_loader
from conftest import load_source

REPO_ROOT = Path(__file__).resolve().parent.parent

PLUGIN = REPO_ROOT / "roles/ingest_api/lookup_plugins/ingest_api_release_id.py"
SUBDIRS = ["dw_ingest", "sql"]


plugin = load_source(PLUGIN, "ingest_api_release_id")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A small app/ tree plus requirements.txt beside it."""
    src = tmp_path / "app"
    (src / "dw_ingest" / "sub").mkdir(parents=True)
    (src / "sql").mkdir()
    (src / "tests").mkdir()
    (src / "dw_ingest" / "__init__.py").write_text("")
    (src / "dw_ingest" / "main.py").write_text("print('hello')\n")
    (src / "dw_ingest" / "sub" / "util.py").write_text("X = 1\n")
    (src / "sql" / "schema.sql").write_text("CREATE TABLE t (id int);\n")
    (src / "tests" / "test_x.py").write_text("def test(): pass\n")
    (tmp_path / "requirements.txt").write_text("fastapi==1.0\n")
    return src


@pytest.fixture
def release_id(app: Path) -> Callable[[], str]:
    return lambda: plugin.release_id(app, SUBDIRS, app.parent / "requirements.txt")


def test_is_twelve_hex_digits_and_deterministic(release_id: Callable[[], str]) -> None:
    first = release_id()
    assert len(first) == 12 and all(c in "0123456789abcdef" for c in first)
    assert release_id() == first


def test_independent_of_creation_order(tmp_path: Path) -> None:
    ids = []
    for name, order in (("a", ["x.py", "y.py", "z.py"]), ("b", ["z.py", "x.py", "y.py"])):
        src = tmp_path / name
        (src / "dw_ingest").mkdir(parents=True)
        (src / "sql").mkdir()
        for filename in order:
            (src / "dw_ingest" / filename).write_text(filename)
        (src / "req.txt").write_text("pinned\n")
        ids.append(plugin.release_id(src, SUBDIRS, src / "req.txt"))
    assert ids[0] == ids[1]


def test_changes_on_a_content_change(app: Path, release_id: Callable[[], str]) -> None:
    before = release_id()
    (app / "dw_ingest" / "sub" / "util.py").write_text("X = 2\n")
    assert release_id() != before


def test_changes_on_a_schema_change(app: Path, release_id: Callable[[], str]) -> None:
    before = release_id()
    (app / "sql" / "schema.sql").write_text("CREATE TABLE t (id bigint);\n")
    assert release_id() != before


def test_changes_on_a_rename_or_new_file(app: Path, release_id: Callable[[], str]) -> None:
    before = release_id()
    (app / "dw_ingest" / "main.py").rename(app / "dw_ingest" / "app.py")
    renamed = release_id()
    assert renamed != before
    (app / "dw_ingest" / "empty.py").write_text("")
    assert release_id() not in {before, renamed}


def test_changes_when_requirements_change(app: Path, release_id: Callable[[], str]) -> None:
    before = release_id()
    (app.parent / "requirements.txt").write_text("fastapi==1.1\n")
    assert release_id() != before


def test_ignores_bytecode_and_pycache(app: Path, release_id: Callable[[], str]) -> None:
    before = release_id()
    (app / "dw_ingest" / "__pycache__").mkdir()
    (app / "dw_ingest" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (app / "dw_ingest" / "__pycache__" / "stray.txt").write_text("anything")
    (app / "dw_ingest" / "sub" / "old.pyc").write_bytes(b"\x00bytecode")
    assert release_id() == before


def test_ignores_files_outside_the_subdirectories(app: Path, release_id: Callable[[], str]) -> None:
    before = release_id()
    (app / "tests" / "test_x.py").write_text("def test(): assert False\n")
    (app / "README.md").write_text("docs\n")
    assert release_id() == before


def test_lists_sorted_relative_paths_without_bytecode(app: Path) -> None:
    (app / "dw_ingest" / "__pycache__").mkdir()
    (app / "dw_ingest" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"")
    assert plugin.release_files(app, SUBDIRS) == [
        "dw_ingest/__init__.py",
        "dw_ingest/main.py",
        "dw_ingest/sub/util.py",
        "sql/schema.sql",
    ]


def test_missing_inputs_fail(app: Path) -> None:
    with pytest.raises(FileNotFoundError):
        plugin.release_id(app, ["dw_ingest", "missing"], app.parent / "requirements.txt")
    with pytest.raises(FileNotFoundError):
        plugin.release_id(app, SUBDIRS, app.parent / "missing.txt")


def test_the_repository_app_has_an_id() -> None:
    """The role's defaults point at app/ and requirements.txt; both must hash."""
    assert len(plugin.release_id(REPO_ROOT / "app", SUBDIRS, REPO_ROOT / "requirements.txt")) == 12


def test_the_lookup_returns_the_hashed_files_for_the_archive(app: Path) -> None:
    """files=true gives the role's archive task exactly what the id is computed over, as absolute
    paths: bytecode and directories outside the subdirectories stay out of the release."""
    (app / "sql" / "__pycache__").mkdir()
    (app / "sql" / "__pycache__" / "x.pyc").write_bytes(b"")
    lookup_loader.add_directory(str(PLUGIN.parent))
    lookup = lookup_loader.get("ingest_api_release_id", loader=DataLoader(), templar=None)
    requirements = str(app.parent / "requirements.txt")
    files = lookup.run([str(app)], {}, subdirs=SUBDIRS, requirements=requirements, files=True)
    assert files == [str(app / relative) for relative in plugin.release_files(app, SUBDIRS)]
    assert len(files) == 4
    assert lookup.run([str(app)], {}, subdirs=SUBDIRS, requirements=requirements) == [
        plugin.release_id(app, SUBDIRS, requirements)
    ]

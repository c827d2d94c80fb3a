"""The commands the operator manual shows (README.md and docs/*.md) work when pasted.

For every ```sh / ```bash block and every inline `ansible-playbook ...` command:

- the block passes `bash -n`, each command parses with shlex.split;
- every playbook it names (site.yml, playbooks/*.yml) exists, and an ansible-playbook command has
  no positional argument that is not a playbook (what an unquoted value with a space leaves behind);
- every `--tags` / `--skip-tags` names a tag of the playbooks or roles (inline `--tags X` too);
- every `-i inventories/X` exists;
- every `-e` value reaches ansible whole: `key=value with space` is one argv item, and Ansible's own
  key=value split of it (shell-like) gives one `key=value` per variable, no stray word, no open quote;
- every repo path it names (scripts/, roles/, inventories/, playbooks/, ...) exists;
- every variable it sets with `-e` is known to a role default, an argument_spec or a playbook.

Placeholders are written `<like this>` (a glob in a path) and optional parts `[-e like=this]`.
Every docs/ page is linked from README.md, relative links and their anchors resolve, and the README
stays a front door of at most 200 lines. The self-tests plant bad commands the checker must report.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = "__PH__"
REPO_DIRS = ("scripts/", "roles/", "inventories/", "playbooks/", "bench/", "app/", "tests/", "molecule/", "templates/")
OPERATORS = {"|", "||", "&", "&&", ";", "(", ")", "<", ">", ">>", "2>", "|&"}


class _Loader(yaml.SafeLoader):
    """Ansible's YAML with its custom tags (!vault, !unsafe) read as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _yaml_files() -> list[Path]:
    files = [ROOT / "site.yml", *sorted((ROOT / "playbooks").glob("*.yml"))]
    for role in sorted((ROOT / "roles").iterdir()):
        for sub in ("tasks", "handlers"):
            files += sorted((role / sub).glob("**/*.yml"))
    return files


def _walk(node, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "tags":
                values = value if isinstance(value, list) else str(value).split(",")
                found.update(str(v).strip() for v in values if v is not None)
            _walk(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk(item, found)


@cache
def known_tags() -> frozenset[str]:
    found: set[str] = set()
    for path in _yaml_files():
        _walk(yaml.load(path.read_text(), Loader=_Loader), found)  # noqa: S506 - SafeLoader subclass
    return frozenset(found)


@cache
def known_variables() -> frozenset[str]:
    names: set[str] = set()
    for defaults in (ROOT / "roles").glob("*/defaults/main.yml"):
        names.update((yaml.load(defaults.read_text(), Loader=_Loader) or {}).keys())  # noqa: S506
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        entries = (yaml.load(spec.read_text(), Loader=_Loader) or {}).get("argument_specs", {})  # noqa: S506
        for entry in entries.values():
            names.update((entry or {}).get("options", {}) or {})
    for playbook in [ROOT / "site.yml", *(ROOT / "playbooks").glob("*.yml")]:
        names.update(re.findall(r"\b[a-z_][a-z0-9_]*\b", playbook.read_text()))
    return frozenset(names)


def _placeholders(text: str) -> str:
    """`<db host>` -> a plain word; `[-e x=1]` (optional part) -> its content."""
    text = re.sub(r"<[A-Za-z][^<>\n]*>", PLACEHOLDER, text)
    out, i = [], 0
    while i < len(text):
        if text[i] == "[" and text[i + 1 : i + 2] == "-" and (i == 0 or text[i - 1] in " \t"):
            depth, j, quote = 0, i, None
            while j < len(text):
                c = text[j]
                if quote:
                    quote = None if c == quote else quote
                elif c in "'\"":
                    quote = c
                elif c == "[":
                    depth += 1
                elif c == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j < len(text):
                out.append(text[i + 1 : j])
                i = j + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def extract(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(shell blocks, inline ansible-playbook commands), each with its line number."""
    blocks, inline = [], []
    lines = text.splitlines()
    i, outside = 0, []
    while i < len(lines):
        fence = re.match(r"^\s*```(\w*)\s*$", lines[i])
        if fence:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
                body.append(lines[i])
                i += 1
            if fence.group(1) in ("sh", "bash"):
                blocks.append((start + 1, "\n".join(body)))
        else:
            outside.append((i + 1, lines[i]))
        i += 1
    for number, line in outside:
        for match in re.finditer(r"`(ansible-playbook [^`]+)`", line):
            inline.append((number, match.group(1)))
    return blocks, inline


def _commands(block: str) -> list[str]:
    """One logical line per command: backslash continuations joined, and a line whose quote is still
    open joined with the next (a quoted argument over several lines); comment-only lines dropped."""
    commands, pending = [], ""
    for line in re.sub(r"\\\n", " ", block).splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:
            continue
        if pending.strip() and not pending.lstrip().startswith("#"):
            commands.append(pending)
        pending = ""
    if pending:
        commands.append(pending)  # an open quote at the end: check_command reports it
    return commands


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _path_exists(path: str) -> bool:
    path = path.removeprefix("./").rstrip("/")
    if PLACEHOLDER in path:
        return any(ROOT.glob(path.replace(PLACEHOLDER, "*")))
    return (ROOT / path).exists()


def _check_extra_vars(value: str, problems: list[str]) -> None:
    if value.startswith("@") or value == PLACEHOLDER:
        return
    if value.lstrip().startswith("{"):
        try:
            names = list(json.loads(value))
        except ValueError as error:
            problems.append(f"-e {value!r}: not valid JSON ({error})")
            return
    else:
        try:
            words = shlex.split(value)
        except ValueError:
            problems.append(f"-e {value!r}: unbalanced quote inside the value")
            return
        names = []
        for word in words:
            if "=" not in word:
                problems.append(f"-e {value!r}: {word!r} is not key=value: a value with a space needs quotes")
                continue
            names.append(word.split("=", 1)[0])
    for name in names:
        if name not in known_variables():
            problems.append(f"-e {name}=...: no role default, argument_spec or playbook knows {name!r}")


def _check_ansible_playbook(argv: list[str], problems: list[str]) -> None:
    with_value = {
        "-i",
        "--inventory",
        "-e",
        "--extra-vars",
        "-t",
        "--tags",
        "--skip-tags",
        "-l",
        "--limit",
        "--vault-password-file",
        "--vault-id",
        "-u",
        "--user",
        "-f",
        "--forks",
        "--start-at-task",
        "-c",
        "--connection",
        "--private-key",
    }
    i = 1
    while i < len(argv):
        arg = argv[i]
        option, value = arg, None
        if arg.startswith("--") and "=" in arg:
            option, value = arg.split("=", 1)
        elif arg in with_value:
            value = argv[i + 1] if i + 1 < len(argv) else None
            i += 1
        if option in ("-i", "--inventory") and value is not None:
            if not value.startswith("inventories/") or not _path_exists(value):
                problems.append(f"-i {value}: no such inventory")
        elif option in ("-e", "--extra-vars") and value is not None:
            _check_extra_vars(value, problems)
        elif option in ("-t", "--tags", "--skip-tags") and value is not None:
            for tag in value.split(","):
                if tag != PLACEHOLDER and tag not in known_tags():
                    problems.append(f"{option} {tag}: no such tag in the playbooks or roles")
        elif not arg.startswith("-"):
            if not arg.endswith(".yml"):
                problems.append(f"stray argument {arg!r}: not a playbook (an unquoted value with a space?)")
            elif not (arg == "site.yml" or arg.startswith("playbooks/")) or not _path_exists(arg):
                problems.append(f"{arg}: no such playbook")
        i += 1


def check_command(command: str) -> list[str]:
    """What is wrong with one shell command line (placeholders already normalised)."""
    problems: list[str] = []
    try:
        shlex.split(command, comments=True)
        tokens = _tokens(command)
    except ValueError as error:
        return [f"does not parse with shlex.split: {error}"]
    for token in tokens:
        for part in token.split("="):
            if part.removeprefix("./").startswith(REPO_DIRS) and not _path_exists(part):
                problems.append(f"{part}: no such path in the repository")
    segments, current = [], []
    for token in tokens:
        if token in OPERATORS:
            segments.append(current)
            current = []
        else:
            current.append(token)
    segments.append(current)
    for segment in segments:
        if "ansible-playbook" in segment:
            _check_ansible_playbook(segment[segment.index("ansible-playbook") :], problems)
    return problems


def bash_syntax(script: str) -> str | None:
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    return None if result.returncode == 0 else result.stderr.strip()


def check_text(text: str) -> list[str]:
    """Every problem of a Markdown page's commands, as 'line N: command: problem'."""
    problems = []
    blocks, inline = extract(text)
    for line, block in blocks:
        script = _placeholders(block)
        if error := bash_syntax(script):
            problems.append(f"line {line}: block fails bash -n: {error}")
        for command in _commands(script):
            problems += [f"line {line}: {command.strip()}: {p}" for p in check_command(command)]
    for line, command in inline:
        normalised = _placeholders(command)
        if error := bash_syntax(normalised):
            problems.append(f"line {line}: {command}: fails bash -n: {error}")
        problems += [f"line {line}: {command}: {p}" for p in check_command(normalised)]
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if not in_fence and re.search(r"`ansible-playbook [^`]*$", line):
            problems.append(f"line {number}: an inline ansible-playbook command split over lines (unchecked)")
        for tag in re.findall(r"`--(?:skip-)?tags ([a-z_]+)`", line):
            if tag not in known_tags():
                problems.append(f"line {number}: --tags {tag}: no such tag in the playbooks or roles")
    return problems


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_in_the_manual_work(page: Path) -> None:
    assert check_text(page.read_text()) == []


def test_the_checker_finds_commands() -> None:
    blocks = sum(len(extract(page.read_text())[0]) for page in DOCS)
    inline = sum(len(extract(page.read_text())[1]) for page in DOCS)
    assert blocks >= 10 and inline >= 10, (blocks, inline)
    assert {"postgresql_config", "pgbackrest_stanza", "ingest_api_release"} <= known_tags()


BAD = {
    "missing playbook": ("`ansible-playbook playbooks/no-such.yml -i inventories/production`", "no such playbook"),
    "unquoted value with a space": (
        "`ansible-playbook playbooks/restore.yml -i inventories/production -e restore_confirm=db1"
        " -e restore_target=2026-11-24 02:00:00+00`",
        "stray argument '02:00:00+00'",
    ),
    "value quoted for the shell only": (
        "```sh\nansible-playbook playbooks/restore-drill.yml -i inventories/local"
        ' -e "restore_target=2026-11-24 02:00:00+00"\n```',
        "is not key=value",
    ),
    "unbalanced quote inside": (
        """`ansible-playbook playbooks/restore-drill.yml -i inventories/local -e "restore_target='2026-11-24"`""",
        "unbalanced quote",
    ),
    "unknown tag": ("`ansible-playbook site.yml -i inventories/local --tags postgresql_confg`", "no such tag"),
    "unknown inline tag": ("| settings | `--tags no_such_slice` | ... |", "no such tag"),
    "missing inventory": ("`ansible-playbook site.yml -i inventories/prodution`", "no such inventory"),
    "unknown variable": ("`ansible-playbook playbooks/app.yml -i inventories/local -e ingest_api_relase=1`", "knows"),
    "missing script": ("```sh\nscripts/no-such-script inventories/local\n```", "no such path"),
    "shell syntax": ("```sh\nif true; then echo\n```", "bash -n"),
    "inline command over two lines": ("`ansible-playbook site.yml\n-i inventories/local`", "split over lines"),
}


@pytest.mark.parametrize("name", BAD)
def test_the_checker_reports_a_planted_mistake(name: str) -> None:
    text, expected = BAD[name]
    problems = check_text(text)
    assert any(expected in problem for problem in problems), problems


def test_the_checker_accepts_the_right_forms() -> None:
    text = (
        "```sh\nansible-playbook playbooks/restore.yml -i inventories/<env> -e restore_confirm=<db host> \\\n"
        "  [-e restore_repo=2] [-e \"restore_target='2026-11-24 02:00:00+00'\"]\n```\n"
        "`ansible-playbook playbooks/verify-backups.yml -i inventories/production"
        " [-e '{\"pgbackrest_verify_repos\": [2]}']`\n"
        "`ansible-playbook site.yml -i inventories/local --limit 'all:!clients' --skip-tags pgbackrest_stanza`\n"
    )
    assert check_text(text) == []


# -- the front door and the links --------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    in_fence = False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence or not (match := re.match(r"^#{1,6}\s+(.*)$", line)):
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = {target.split("#")[0] for target in LINK.findall(readme)}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages, "no docs/ pages"
    assert pages - linked == set()


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        exists = linked.exists()
        if not exists or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert broken == []


def test_the_link_check_reports_a_missing_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A heading: with `code`\n\n## A heading: with code\n")
    assert anchors(page) == {"a-heading-with-code", "a-heading-with-code-1"}


def test_every_alert_has_its_runbook_section() -> None:
    rules = (ROOT / "roles" / "monitoring" / "templates" / "dw-alerts.yml.j2").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    runbooks = re.findall(r"runbook_url: \"\[\[ monitoring_runbook_base_url \]\]#([a-z]+)\"", rules)
    assert runbooks == [alert.lower() for alert in alerts]
    assert set(runbooks) <= anchors(ROOT / "docs" / "monitoring.md")

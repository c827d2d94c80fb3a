"""Read the summary that `pgbackrest verify --output=text --verbose` prints.

pgBackRest 2.45 exits 0 from verify even when it finds a backup file whose checksum does not match
or a WAL segment it cannot decompress; the summary is the only evidence, so it is parsed here and
never trusted by exit status.
"""

from __future__ import annotations

import re

_STATUS = re.compile(r"^status: (?P<status>\S+)$", re.MULTILINE)
_ARCHIVE = re.compile(r"archiveId: (?P<id>\S+), total WAL checked: (?P<checked>\d+), total valid WAL: (?P<valid>\d+)")
_BACKUP = re.compile(
    r"backup: (?P<label>\S+), status: (?P<status>\S+), "
    r"total files checked: (?P<checked>\d+), total valid files: (?P<valid>\d+)"
)


def _counted(match: re.Match[str]) -> dict[str, object]:
    found = match.groupdict()
    return {**found, "checked": int(found["checked"]), "valid": int(found["valid"])}


def pgbackrest_verify_summary(text: str) -> dict[str, object]:
    """The stanza status, each backup and WAL archive with its counts, and every problem in words."""
    status = _STATUS.search(text)
    archives = [_counted(m) for m in _ARCHIVE.finditer(text)]
    backups = [_counted(m) for m in _BACKUP.finditer(text)]
    problems = []
    if status is None:
        problems.append("verify printed no summary (needs pgBackRest 2.45 or newer with --output=text --verbose)")
    elif status["status"] != "ok":
        problems.append(f"stanza status is {status['status']}")
    if not backups:
        problems.append("no backup was checked")
    problems += [
        f"backup {b['label']} is {b['status']}: {b['valid']} of {b['checked']} files valid"
        for b in backups
        if b["status"] != "valid" or b["valid"] != b["checked"]
    ]
    problems += [
        f"WAL archive {a['id']}: {a['valid']} of {a['checked']} segments valid"
        for a in archives
        if a["valid"] != a["checked"]
    ]
    return {
        "status": status["status"] if status else None,
        "backups": backups,
        "archives": archives,
        "problems": problems,
    }


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"pgbackrest_verify_summary": pgbackrest_verify_summary}

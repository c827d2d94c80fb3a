"""The names of the pgBackRest role's systemd units, in one place (issue #25).

`kind | pgbackrest_unit(key)` is a unit's name without its suffix: the role names its units with
it, and the roles that watch them (dw_status, monitoring) hold a symbolic link to this file in
their filter_plugins and read the names the same way. Kinds:

- ``backup``, key a schedule's name: ``pgbackrest-<name>`` (``pgbackrest_schedules``);
- ``verify``, key a repository: ``pgbackrest-verify-repo<N>`` (``pgbackrest_verify_schedules``);
- ``drill``, key a repository: ``pgbackrest-drill-repo<N>`` (``pgbackrest_drill_schedules``);
- ``server``, no key: ``pgbackrest-server``, the TLS server of a dedicated repository host.

Without a key, ``verify`` and ``drill`` give the names' common prefix (for a glob, or a text
that appends the repository at run time).
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

_PREFIX = "pgbackrest-"
_KEYED = {"backup": "", "verify": "verify-repo", "drill": "drill-repo"}


def pgbackrest_unit(kind: str, key: Any = None) -> str:
    """The name (no .service or .timer) of the unit of this kind and key."""
    if kind == "server":
        if key is not None:
            raise AnsibleFilterError("pgbackrest_unit: 'server' takes no key")
        return f"{_PREFIX}server"
    if kind not in _KEYED:
        raise AnsibleFilterError(f"pgbackrest_unit: unknown kind {kind!r} (backup, verify, drill, server)")
    if key is None:
        if kind == "backup":
            raise AnsibleFilterError("pgbackrest_unit: 'backup' needs the schedule's name")
        return f"{_PREFIX}{_KEYED[kind]}"
    key = str(key)
    if kind == "backup" and (not key or "/" in key or key.startswith(("verify-", "drill-")) or key == "server"):
        raise AnsibleFilterError(f"pgbackrest_unit: {key!r} is not a backup schedule's name")
    if kind != "backup" and not key.isdigit():
        raise AnsibleFilterError(f"pgbackrest_unit: {kind} takes a repository number, not {key!r}")
    return f"{_PREFIX}{_KEYED[kind]}{key}"


class FilterModule:
    """pgbackrest_unit."""

    def filters(self) -> dict[str, Any]:
        return {"pgbackrest_unit": pgbackrest_unit}

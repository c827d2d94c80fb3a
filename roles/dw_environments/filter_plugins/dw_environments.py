"""The environments list (dw_environments): its validation and the names derived from it.

One place for both: the roles read the derived names through the `dw_environments_resolve` filter,
and the molecule tests import this module to compute the same names, so a unit or role name is
never rebuilt by hand elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# A name becomes part of a unit name (dw-api-<name>) and of file names; short, lower case.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,15}$")
# A database name becomes part of role names (<database>_api_green): a plain lower-case SQL
# identifier, short enough that the longest derived role stays within PostgreSQL's 63 bytes.
DATABASE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
PORT_RANGE = range(1024, 65536)
LOGIN_COLOURS = ("blue", "green")


def derived_names(env: Mapping[str, Any]) -> dict[str, Any]:
    """Every name the roles, playbooks and tests derive from one environment entry."""
    name, database = env["name"], env["database"]
    return {
        "unit": f"dw-api-{name}",
        "owner_role": f"{database}_owner",
        "writer_role": f"{database}_writer",
        "reader_role": f"{database}_reader",
        "api_logins": {colour: f"{database}_api_{colour}" for colour in LOGIN_COLOURS},
    }


def resolve(environments: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each entry with its derived names added (the entry's own keys win)."""
    return [derived_names(env) | dict(env) for env in environments]


def problems(environments: Any, reserved_ports: Mapping[str, Any] | None = None) -> list[str]:
    """Every rule the list breaks, one message each, naming the entry and the rule."""
    if not isinstance(environments, Sequence) or isinstance(environments, str) or not environments:
        return ["dw_environments must be a non-empty list of environments"]
    reserved = {int(port): what for what, port in (reserved_ports or {}).items() if str(port).isdigit()}
    found: list[str] = []
    seen: dict[str, dict[Any, str]] = {"name": {}, "database": {}, "api_port": {}}
    for index, env in enumerate(environments):
        label = f"dw_environments[{index}]"
        if not isinstance(env, Mapping):
            found.append(f"{label} must be a mapping with name, environment, database and api_port")
            continue
        label += f" ({env.get('name', '?')})"
        missing = [key for key in ("name", "environment", "database", "api_port") if key not in env]
        if missing:
            found.append(f"{label} lacks {', '.join(missing)}")
            continue
        name, database, port = env["name"], env["database"], env["api_port"]
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            found.append(f"{label}: name {name!r} must match {NAME_PATTERN.pattern} (it becomes unit and file names)")
        if not isinstance(database, str) or not DATABASE_PATTERN.match(database):
            found.append(
                f"{label}: database {database!r} must match {DATABASE_PATTERN.pattern} "
                "(a lower-case SQL identifier that leaves room for the role names derived from it)"
            )
        if isinstance(port, bool) or not isinstance(port, int) or port not in PORT_RANGE:
            found.append(f"{label}: api_port {port!r} must be a whole number from 1024 to 65535")
        elif port in reserved:
            found.append(f"{label}: api_port {port} is already used by {reserved[port]}")
        policy = env.get("api_conflict_policy", "ignore")
        if policy not in ("ignore", "update"):
            found.append(f"{label}: api_conflict_policy {policy!r} must be ignore or update")
        for key, value in (("name", name), ("database", database), ("api_port", port)):
            try:
                first = seen[key].setdefault(value, label)
            except TypeError:  # an unhashable value was already reported above
                continue
            if first != label:
                found.append(f"{label}: {key} {value!r} is already used by {first}; each environment needs its own")
    return found


class FilterModule:
    """dw_environments_resolve, dw_environments_problems."""

    def filters(self) -> dict[str, Any]:
        return {"dw_environments_resolve": resolve, "dw_environments_problems": problems}

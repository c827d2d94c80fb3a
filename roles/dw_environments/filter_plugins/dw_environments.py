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
# The TLS edge serves each environment on its own public port: edge_port when the entry gives
# one, otherwise the API's port plus this offset (8000 -> 8443, 8001 -> 8444, 8002 -> 8445).
EDGE_PORT_OFFSET = 443


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in PORT_RANGE


def derived_names(env: Mapping[str, Any]) -> dict[str, Any]:
    """Every name the roles, playbooks and tests derive from one environment entry."""
    name, database = env["name"], env["database"]
    return {
        "unit": f"dw-api-{name}",
        "edge_port": env.get("edge_port", env["api_port"] + EDGE_PORT_OFFSET),
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
    seen: dict[str, dict[Any, str]] = {"name": {}, "database": {}, "port": {}}
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
        edge_port = env.get("edge_port", port + EDGE_PORT_OFFSET if _is_port(port) else None)
        for key, value in (("api_port", port), ("edge_port", edge_port)):
            if value is None:  # no edge_port given and no valid api_port to derive it from
                continue
            if not _is_port(value):
                found.append(f"{label}: {key} {value!r} must be a whole number from 1024 to 65535")
            elif value in reserved:
                found.append(f"{label}: {key} {value} is already used by {reserved[value]}")
            elif (first := seen["port"].setdefault(value, f"{label} {key}")) != f"{label} {key}":
                found.append(f"{label}: {key} {value} is already used by {first}; each port serves one thing")
        policy = env.get("api_conflict_policy", "ignore")
        if policy not in ("ignore", "update"):
            found.append(f"{label}: api_conflict_policy {policy!r} must be ignore or update")
        for key, value in (("name", name), ("database", database)):
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

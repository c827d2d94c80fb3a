"""People's accounts of the team_access role: validation of team_access_members, and sshd -T parsing.

The checks run on the controller before any host changes, so a pasted private key, a DSA key that
sshd would refuse, a typo in a name or two entries for one person stop the run with a message
naming the entry, instead of an account that cannot log in (or one that should not exist).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any

# Debian's useradd rules, kept to lower case: a login name that is also a valid group name.
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# "[options ]type base64[ comment]": the type and blob are the first pair of words whose second
# word is base64 (authorized_keys options may come first).
KEY_PATTERN = re.compile(r"(?:^|\s)([a-z0-9@.-]+)\s+(AAAA[0-9A-Za-z+/]+={0,2})(?:\s|$)")
STATES = ("present", "absent")


def _accepted_key_types(algorithms: Sequence[str]) -> set[str]:
    """Key types sshd accepts under PubkeyAcceptedAlgorithms (RSA keys sign with rsa-sha2-*)."""
    accepted = set(algorithms)
    if accepted & {"rsa-sha2-256", "rsa-sha2-512"}:
        accepted.add("ssh-rsa")
    if accepted & {"rsa-sha2-256-cert-v01@openssh.com", "rsa-sha2-512-cert-v01@openssh.com"}:
        accepted.add("ssh-rsa-cert-v01@openssh.com")
    return accepted


def _whole(blob: bytes) -> bool:
    """Whether a plain public key blob is complete: length-prefixed fields filling it exactly."""
    offset, fields = 0, 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            return False
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4 + length
        fields += 1
    return offset == len(blob) and fields >= 2


def _key_problem(label: str, key: Any, accepted: set[str]) -> str | None:
    if not isinstance(key, str):
        return f"{label} must be a public key string"
    if "PRIVATE KEY" in key:
        return f"{label} is a PRIVATE key: remove it from the inventory and have its owner make a new pair"
    match = KEY_PATTERN.search(key.strip())
    if match is None or "\n" in key.strip():
        return f"{label} is not one public key line ('<type> AAAA... [comment]')"
    key_type, blob = match.groups()
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        embedded = raw[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        return f"{label} ({key_type}) has a damaged key body (was it cut or wrapped when pasted?)"
    if embedded != key_type:
        return f"{label} says {key_type} but its body is a {embedded} key"
    if not key_type.endswith("-cert-v01@openssh.com") and not _whole(raw):
        return f"{label} ({key_type}) has a damaged key body (was it cut or wrapped when pasted?)"
    if key_type not in accepted:
        return f"{label} is a {key_type} key, which sshd will refuse (team_access_sshd_pubkey_algorithms)"
    return None


def problems(
    members: Any,
    pubkey_algorithms: Sequence[str],
    group: str,
    sudo_group: str,
) -> list[str]:
    """Every rule team_access_members breaks, one message each, naming the entry."""
    if not isinstance(members, Sequence) or isinstance(members, str):
        return ["team_access_members must be a list of members"]
    found: list[str] = []
    accepted = _accepted_key_types(pubkey_algorithms)
    seen: dict[str, str] = {}
    for index, member in enumerate(members):
        label = f"team_access_members[{index}]"
        if not isinstance(member, Mapping):
            found.append(f"{label} must be a mapping with name and ssh_keys")
            continue
        name = member.get("name")
        label += f" ({name})"
        if not isinstance(name, str) or not NAME_PATTERN.match(name) or name == "root":
            found.append(f"{label}: name must match {NAME_PATTERN.pattern} and not be root")
        elif name in seen:
            found.append(f"{label}: {name} is already listed as {seen[name]}; one entry per person")
        else:
            seen[name] = label
        state = member.get("state", "present")
        if state not in STATES:
            found.append(f"{label}: state {state!r} must be present or absent")
            continue
        if not isinstance(member.get("sudo", False), bool):
            found.append(f"{label}: sudo must be true or false")
        groups = member.get("groups", [])
        if not isinstance(groups, Sequence) or isinstance(groups, str):
            found.append(f"{label}: groups must be a list of group names")
        elif sudo_group in groups and not member.get("sudo", False):
            found.append(f"{label}: grant sudo with sudo: true, not by listing {sudo_group} in groups")
        if state == "absent":
            continue
        keys = member.get("ssh_keys")
        if not isinstance(keys, Sequence) or isinstance(keys, str) or not keys:
            found.append(
                f"{label}: ssh_keys must list at least one public key"
                " (to take someone's access away, set state: absent)"
            )
            continue
        for number, key in enumerate(keys):
            problem = _key_problem(f"{label}.ssh_keys[{number}]", key, accepted)
            if problem:
                found.append(problem)
    if group == sudo_group:
        found.append("team_access_sudo_group must differ from team_access_group (every member is in the latter)")
    return found


def by_state(members: Sequence[Mapping[str, Any]], state: str) -> list[Mapping[str, Any]]:
    """The members whose state (present when not given) is the one asked for."""
    return [member for member in members if member.get("state", "present") == state]


def sshd_effective(output: str) -> dict[str, list[str]]:
    """`sshd -T` output as {keyword: [value, ...]} (keywords such as allowgroups repeat)."""
    effective: dict[str, list[str]] = {}
    for line in output.splitlines():
        keyword, _, value = line.strip().partition(" ")
        if keyword:
            effective.setdefault(keyword.lower(), []).append(value.strip())
    return effective


class FilterModule:
    """Filters of the team_access role."""

    def filters(self) -> dict[str, Any]:
        return {
            "team_access_problems": problems,
            "team_access_by_state": by_state,
            "team_access_sshd_effective": sshd_effective,
        }

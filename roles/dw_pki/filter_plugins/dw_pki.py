"""Where a host trusts the inventory's private CA, in one place (issue #25).

`ca_name | dw_pki_trust_path` is the CA's file in the host's trust store: the dw_pki role copies
the CA there, and the roles that verify peers against it (etcd, Patroni, pgBackRest, monitoring)
point their CA settings at the same file. Those roles hold a symbolic link to this file in their
filter_plugins, and read the CA's name as
`dw_pki_ca_name | default('dw_pki' | dw_role_default('dw_pki_ca_name'))`.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

# Debian's update-ca-certificates adds every *.crt here to the system trust store.
TRUST_DIR = "/usr/local/share/ca-certificates"


def trust_path(ca_name: str) -> str:
    """The trust store file of the CA named `ca_name`."""
    if not isinstance(ca_name, str) or not ca_name or "/" in ca_name:
        raise AnsibleFilterError(f"dw_pki_trust_path: {ca_name!r} is not a CA name (dw_pki_ca_name)")
    return f"{TRUST_DIR}/{ca_name}.crt"


class FilterModule:
    """dw_pki_trust_path."""

    def filters(self) -> dict[str, Any]:
        return {"dw_pki_trust_path": trust_path}

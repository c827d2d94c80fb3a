"""roles/dw_pki's certificate entry point signs only when the certificate would differ.

A run that changes nothing used to build a CSR on the host and have the controller sign it for
every certificate (15 on the ha layout) so that the signing module could compare. The role now
compares the current certificate itself (tasks/certificate.yml, vars/main.yml's
_dw_pki_cert_current) and signs only when something differs. These tests run the entry point for
one host with a local connection, everything under tmp_path: each thing that must lead to a new
certificate does, and a run with nothing to do signs nothing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import ansible_playbook
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

SIGN_TASK = "Sign the request with the CA on the controller"

PLAY = """\
- name: A certificate from roles/dw_pki
  hosts: all
  gather_facts: false
  tasks:
    - name: Trust the CA
      ansible.builtin.import_role:
        name: dw_pki
        tasks_from: ca
    - name: Issue the certificate
      ansible.builtin.include_role:
        name: dw_pki
        tasks_from: certificate
"""


@pytest.fixture
def issue(tmp_path: Path):
    """issue(*extra args) -> (returncode, output, signed?) for one host's certificate under tmp_path."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    db1: {}\n"
        "  vars:\n    ansible_connection: local\n    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    owner = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    settings = [
        f"_dw_pki_trust_path={tmp_path / 'trusted.crt'}",
        f"dw_pki_certificate_path={tmp_path / 'tls' / 'server.crt'}",
        f"dw_pki_certificate_key_path={tmp_path / 'tls' / 'server.key'}",
        f"dw_pki_certificate_owner={owner}",
        f"dw_pki_certificate_group={group}",
        # The host is this machine: its crypto library is the controller's.
        "_dw_pki_crypto_installed=true",
    ]

    def run(*args: str) -> tuple[int, str, bool]:
        extra = [arg for setting in settings for arg in ("-e", setting)]
        result = ansible_playbook(
            "-i", str(inventory / "hosts.yml"), str(playbook), *extra, *args, timeout=180, ANSIBLE_BECOME="false"
        )
        output = result.stdout + result.stderr
        signed = re.search(rf"TASK \[dw_pki : {SIGN_TASK}\][^\n]*\n(ok|changed): ", output) is not None
        return result.returncode, output, signed

    run.cert = tmp_path / "tls" / "server.crt"  # type: ignore[attr-defined]
    run.ca = inventory / ".pki" / "dw-platform-ca.crt"  # type: ignore[attr-defined]
    return run


def _changed(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1]))


def _names(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return {str(name.value) for name in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}


def _issuer_key_id(path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value.key_identifier


def _key_id(path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest


def _usages(path: Path) -> list:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_signs_only_what_would_differ(issue):
    """One host's certificate through the changes that must sign it again, each run after one that
    changed nothing (a run costs seconds, so the cases share one sequence)."""
    code, output, signed = issue()
    assert code == 0, output[-3000:]
    assert signed, output[-3000:]
    assert _issuer_key_id(issue.cert) == _key_id(issue.ca)

    code, output, signed = issue()
    assert code == 0, output[-3000:]
    assert not signed, f"the unchanged certificate was signed again:\n{output[-3000:]}"
    assert _changed(output) == 0, output[-3000:]

    # A name added; another usage (Patroni's and etcd's certificates are clients too); the renewal
    # window reached (400 days before expiry, on a 397-day certificate).
    extra_name = '{"dw_pki_certificate_extra_subject_alt_names": ["DNS:db1.example.test"]}'
    both_usages = '{"dw_pki_certificate_extended_key_usage": ["serverAuth", "clientAuth"]}'
    for case, args in (
        ("a new name", ("-e", extra_name)),
        ("a new usage", ("-e", extra_name, "-e", both_usages)),
        ("the renewal window", ("-e", extra_name, "-e", both_usages, "-e", "dw_pki_certificate_renew_days=400")),
    ):
        before = issue.cert.read_bytes()
        code, output, signed = issue(*args)
        assert code == 0, output[-3000:]
        assert signed and issue.cert.read_bytes() != before, f"{case}: not signed again\n{output[-3000:]}"
    assert "db1.example.test" in _names(issue.cert)
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in _usages(issue.cert)

    # The mode put back; the certificate is not signed again for it.
    issue.cert.chmod(0o600)
    code, output, signed = issue("-e", extra_name, "-e", both_usages)
    assert code == 0, output[-3000:]
    assert issue.cert.stat().st_mode & 0o777 == 0o644

    # A CA made anew under the same name (this host trusts none yet, so the role lets it).
    old_ca = _key_id(issue.ca)
    issue.ca.unlink()
    (issue.ca.parent / "dw-platform-ca.key").unlink()
    code, output, signed = issue("-e", extra_name, "-e", both_usages)
    assert code == 0, output[-3000:]
    assert _key_id(issue.ca) != old_ca
    assert signed, output[-3000:]
    assert _issuer_key_id(issue.cert) == _key_id(issue.ca)

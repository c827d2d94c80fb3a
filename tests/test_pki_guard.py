"""roles/dw_pki refuses to mint a second CA for hosts that trust the first (issue #27), on the controller only.

Two hosts with a local connection run the role's CA tasks (tasks/ca.yml: stat, slurp, the CA on the
controller) with the trust store's path pointed at a file under tmp_path, so nothing outside
tmp_path is read or written. The molecule default scenario runs the same refusal against a
converged instance (molecule/default/tests/test_security.py).
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from pathlib import Path

import pytest
from conftest import ansible_playbook
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PLAY = """\
- name: The CA tasks of roles/dw_pki
  hosts: all
  gather_facts: false
  tasks:
    - name: Ensure the private CA exists
      ansible.builtin.import_role:
        name: dw_pki
        tasks_from: ca
"""


def _self_signed(common_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _fingerprint(pem: bytes) -> str:
    digest = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)


@pytest.fixture
def controller(tmp_path: Path):
    """(run, trust file, CA directory): run(*extra args) runs the CA tasks for two hosts trusting that file."""
    trusted = tmp_path / "trusted" / "dw-platform-ca.crt"
    trusted.parent.mkdir()
    ca_dir = tmp_path / "inventory" / ".pki"
    ca_dir.parent.mkdir()
    hosts = ca_dir.parent / "hosts.yml"
    hosts.write_text(
        "all:\n  hosts:\n    db1: {}\n    api1: {}\n"
        "  vars:\n    ansible_connection: local\n    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)

    def run(*args: str) -> tuple[int, str]:
        result = ansible_playbook("-i", str(hosts), str(playbook), "-e", f"_dw_pki_trust_path={trusted}", *args)
        return result.returncode, " ".join((result.stdout + result.stderr).split())

    return run, trusted, ca_dir


def test_a_controller_without_the_ca_stops_naming_the_ca_the_hosts_trust(controller):
    run, trusted, ca_dir = controller
    pem = _self_signed("dw-platform private CA (staging)")
    trusted.write_bytes(pem)
    for args in ((), ("--check",)):
        rc, output = run(*args)
        assert rc != 0, output[-3000:]
        assert "Stopped before changing anything: db1, api1 already trust a CA of this project" in output
        assert f"SHA-256 fingerprint {_fingerprint(pem)}" in output, output[-3000:]
        assert "subject commonName=dw-platform private CA (staging)" in output
        assert f"This controller has no CA at {ca_dir}/dw-platform-ca.crt" in output
        assert "set dw_pki_ca_dir to the shared directory" in output and "-e dw_pki_replace_ca=true" in output
        assert not ca_dir.exists()
        assert trusted.read_bytes() == pem


def test_the_same_ca_passes_another_stops_and_replacing_is_explicit(controller):
    run, trusted, ca_dir = controller
    old = _self_signed("an older CA")
    trusted.write_bytes(old)
    rc, output = run("-e", "dw_pki_replace_ca=true")
    assert rc == 0, output[-3000:]
    created = (ca_dir / "dw-platform-ca.crt").read_bytes()
    key = hashlib.sha256((ca_dir / "dw-platform-ca.key").read_bytes()).hexdigest()

    # This controller has a CA, but not the one the hosts trust.
    rc, output = run()
    assert rc != 0
    assert f"SHA-256 fingerprint {_fingerprint(old)}" in output, output[-3000:]
    assert f"This controller's CA, {ca_dir}/dw-platform-ca.crt (subject" in output
    assert f"SHA-256 fingerprint {_fingerprint(created)}" in output and "is a different one" in output

    # The hosts trust this controller's CA: nothing to say, nothing changes.
    trusted.write_bytes(created)
    rc, output = run()
    assert rc == 0 and "changed=0" in output, output[-3000:]

    # The certificate without its key would be a new CA under the old name.
    (ca_dir / "dw-platform-ca.key").rename(ca_dir / "kept.key")
    rc, output = run()
    assert rc != 0
    assert f"{ca_dir}/dw-platform-ca.crt is on this controller but its key" in output, output[-3000:]
    assert not (ca_dir / "dw-platform-ca.key").exists()

    # A passphrase that does not open the key fails; the module's default would have made a new key.
    (ca_dir / "kept.key").rename(ca_dir / "dw-platform-ca.key")
    rc, output = run("-e", "dw_pki_ca_passphrase=not-the-one")
    assert rc != 0, output[-3000:]
    assert hashlib.sha256((ca_dir / "dw-platform-ca.key").read_bytes()).hexdigest() == key
    assert (ca_dir / "dw-platform-ca.crt").read_bytes() == created


ROTATION_PLAY = """\
- name: A CA rotation step, the CA tasks, and what roles/dw_pki's main copies into the trust store
  hosts: all
  gather_facts: false
  tasks:
    - name: Take the rotation step
      ansible.builtin.import_role:
        name: dw_pki
        tasks_from: rotate
      when: dw_pki_rotation_step | length > 0
    - name: Ensure the private CA exists
      ansible.builtin.import_role:
        name: dw_pki
        tasks_from: ca
    - name: Trust what the controller holds
      ansible.builtin.copy:
        content: "{{ _dw_pki_trust_bundle }}"
        dest: "{{ _dw_pki_trust_path }}"
        mode: "0644"
"""


def _pems(path: Path) -> list[bytes]:
    """The certificates of a PEM file, each as its own PEM text."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    return [begin + part.split(end)[0] + end + b"\n" for part in path.read_bytes().split(begin)[1:]]


def test_a_rotation_moves_the_ca_step_by_step_and_every_step_passes_the_guard(controller, tmp_path):
    """playbooks/rotate-ca.yml's steps on the controller (tasks/rotate.yml): the next CA is trusted
    beside the CA, takes its name at the switch (the trust file unchanged, its CAs sorted), and the
    retired one leaves the trust; each step passes the foreign-CA check, a step out of order stops
    before any change, and a host that trusts only the retired CA stops the run."""
    run, trusted, ca_dir = controller
    (tmp_path / "play.yml").write_text(ROTATION_PLAY)

    def step(name: str) -> tuple[int, str]:
        return run("-e", f"dw_pki_rotation_step={name}")

    rc, output = step("")
    assert rc == 0, output[-3000:]
    old = (ca_dir / "dw-platform-ca.crt").read_bytes()
    assert _pems(trusted) == [old]

    rc, output = step("switch")
    assert rc != 0 and "there is no next CA" in output and "run -e dw_pki_rotation_step=trust first" in output

    rc, output = step("trust")
    assert rc == 0, output[-3000:]
    new = (ca_dir / "dw-platform-ca.next.crt").read_bytes()
    assert sorted(_pems(trusted)) == sorted([old, new]) and (ca_dir / "dw-platform-ca.crt").read_bytes() == old
    # A CA file TLS clients load as it is (OpenSSL refuses a malformed bundle outright).
    assert ssl.create_default_context(cafile=str(trusted)).cert_store_stats()["x509_ca"] == 2
    bundle = trusted.read_bytes()

    rc, output = step("retire")
    assert rc != 0 and "has not taken over yet" in output, output[-3000:]

    rc, output = step("switch")
    assert rc == 0, output[-3000:]
    assert (ca_dir / "dw-platform-ca.crt").read_bytes() == new
    assert (ca_dir / "dw-platform-ca.retiring.crt").read_bytes() == old
    assert trusted.read_bytes() == bundle  # the same CAs, sorted: nothing to restart for
    rc, output = step("switch")
    assert rc == 0 and "changed=0" in output, output[-3000:]

    rc, output = step("trust")
    assert rc != 0 and "finish it with -e dw_pki_rotation_step=retire" in output, output[-3000:]

    rc, output = step("retire")
    assert rc == 0, output[-3000:]
    assert _pems(trusted) == [new]
    assert ssl.create_default_context(cafile=str(trusted)).cert_store_stats()["x509_ca"] == 1
    assert sorted(p.name for p in ca_dir.iterdir()) == ["dw-platform-ca.crt", "dw-platform-ca.key", "retired"]
    assert [p.read_bytes() for p in (ca_dir / "retired").iterdir()] == [old]

    # A host that missed the rotation still trusts the old CA alone: not this controller's any more.
    trusted.write_bytes(old)
    rc, output = step("")
    assert rc != 0 and f"SHA-256 fingerprint {_fingerprint(old)}" in output, output[-3000:]
    assert trusted.read_bytes() == old

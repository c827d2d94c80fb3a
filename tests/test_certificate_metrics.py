"""dw-certificate-metrics (roles/node_exporter/files/dw-certificate-metrics) reads real certificates.

The certificates are made here by the openssl CLI (the one the script itself calls), in tmp_path:
a CA valid 10 days, a server certificate valid 3 days, a bundle of both, a file holding no
certificate and a missing one. The script runs as the timer runs it, against a list directory and
an output directory in tmp_path, and its output is parsed back.
"""

from __future__ import annotations

import calendar
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "roles" / "node_exporter" / "files" / "dw-certificate-metrics"

_SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def make_certificate(directory: Path, name: str, days: int, subject: str) -> Path:
    """A self-signed certificate (ECDSA P-256, as dw_pki makes them) valid `days` days from now."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", subject),
        ],
        check=True,
        capture_output=True,
    )
    return cert


def not_after(cert: Path) -> float:
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", str(cert)], check=True, capture_output=True, text=True
    ).stdout
    return float(calendar.timegm(time.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")))


def run(lists: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), f"--lists={lists}", f"--output={output}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def unescape(value: str) -> str:
    """A label value read back (the exposition format escapes backslash, double quote and newline)."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        found.append((name, {k: unescape(v) for k, v in _LABEL.findall(labels or "")}, float(value)))
    return found


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    certs = tmp_path / "etc"
    certs.mkdir()
    ca = make_certificate(certs, "ca", 10, "/CN=dw-platform private CA (test)")
    server = make_certificate(certs, "server", 3, "/CN=db1")
    bundle = certs / "bundle.pem"
    bundle.write_text(server.read_text() + ca.read_text())
    not_pem = certs / "server.key"  # a key, no certificate
    lists = tmp_path / "dw-certificates.d"
    lists.mkdir()
    output = tmp_path / "textfile"
    output.mkdir()
    return {"ca": ca, "server": server, "bundle": bundle, "key": not_pem, "lists": lists, "out": output}


def test_every_listed_certificate_gets_its_expiry_and_owner(host: dict[str, Path]) -> None:
    (host["lists"] / "dw_pki.list").write_text(f"# Managed by Ansible\n{host['ca']}\n")
    (host["lists"] / "etcd.list").write_text(f"{host['server']}\n{host['ca']}\n")
    (host["lists"] / "ingest_edge.list").write_text(f"{host['bundle']}\n")
    (host["lists"] / "notes.txt").write_text(f"{host['key']}\n")  # not a .list: ignored
    output = host["out"] / "dw_certificates.prom"
    done = run(host["lists"], output)
    assert done.returncode == 0, done.stderr
    found = samples(output.read_text())
    expiry = {
        (s[1]["path"], s[1]["subject"]): (s[1]["owner"], s[2]) for s in found if s[0].endswith("not_after_seconds")
    }
    assert expiry == {
        # The CA both lists name is one series, its owners joined.
        (str(host["ca"]), "CN=dw-platform private CA (test)"): ("dw_pki,etcd", not_after(host["ca"])),
        (str(host["server"]), "CN=db1"): ("etcd", not_after(host["server"])),
        # A bundle: one sample per certificate in it.
        (str(host["bundle"]), "CN=db1"): ("ingest_edge", not_after(host["server"])),
        (str(host["bundle"]), "CN=dw-platform private CA (test)"): ("ingest_edge", not_after(host["ca"])),
    }
    assert 2.9 * 86400 < not_after(host["server"]) - time.time() <= 3 * 86400
    read_ok = {s[1]["path"]: s[2] for s in found if s[0] == "dw_certificate_read_ok"}
    assert read_ok == {str(host["ca"]): 1, str(host["server"]): 1, str(host["bundle"]): 1}
    (stamp,) = [s[2] for s in found if s[0] == "dw_certificate_metrics_timestamp_seconds"]
    assert abs(stamp - time.time()) < 60
    # Only the output file is left in the directory (the temporary one was renamed over it).
    assert [p.name for p in host["out"].iterdir()] == ["dw_certificates.prom"]


def test_a_missing_or_unreadable_file_is_read_ok_0(host: dict[str, Path]) -> None:
    garbage = host["lists"].parent / "garbage.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    missing = host["lists"].parent / "missing.crt"
    (host["lists"] / "pgbackrest.list").write_text(f"{host['key']}\n{missing}\n{garbage}\n{host['server']}\n")
    output = host["out"] / "dw_certificates.prom"
    done = run(host["lists"], output)
    # The unit stays green: the metric tells, and the script names each file on stderr.
    assert done.returncode == 0
    for path in (host["key"], missing, garbage):
        assert str(path) in done.stderr
    found = samples(output.read_text())
    read_ok = {s[1]["path"]: (s[1]["owner"], s[2]) for s in found if s[0] == "dw_certificate_read_ok"}
    assert read_ok == {
        str(host["key"]): ("pgbackrest", 0),
        str(missing): ("pgbackrest", 0),
        str(garbage): ("pgbackrest", 0),
        str(host["server"]): ("pgbackrest", 1),
    }
    assert [s[1]["path"] for s in found if s[0] == "dw_certificate_not_after_seconds"] == [str(host["server"])]


def test_no_list_directory_writes_only_the_timestamp(tmp_path: Path) -> None:
    output = tmp_path / "dw_certificates.prom"
    done = run(tmp_path / "absent", output)
    assert done.returncode == 0, done.stderr
    assert [s[0] for s in samples(output.read_text())] == ["dw_certificate_metrics_timestamp_seconds"]


def test_a_subject_with_quotes_is_escaped(host: dict[str, Path]) -> None:
    odd = make_certificate(host["lists"].parent, "odd", 5, '/O=a "quoted" org/CN=x')
    (host["lists"] / "ingest_edge.list").write_text(f"{odd}\n")
    output = host["out"] / "dw_certificates.prom"
    assert run(host["lists"], output).returncode == 0
    (subject,) = [s[1]["subject"] for s in samples(output.read_text()) if s[0].endswith("not_after_seconds")]
    # openssl escapes the quotes (RFC 2253), the exposition format escapes them and the backslashes.
    assert subject == r"CN=x,O=a \"quoted\" org"
    assert r'subject="CN=x,O=a \\\"quoted\\\" org"' in output.read_text()

"""What the molecule scenarios' tests share: the project's paths, the inventory's environments
with the names derived from them (by the dw_environments role's own filter plugin), the local
vault (the fixtures every scenario's conftest imports), waiting for a condition, and a load
generator run inside a test host."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
INVENTORY = PROJECT / "inventories" / "local"


def _load_names_module():
    """The dw_environments role's filter plugin: the one place unit, role and port names are derived."""
    path = PROJECT / "roles" / "dw_environments" / "filter_plugins" / "dw_environments.py"
    spec = importlib.util.spec_from_file_location("dw_environment_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES = _load_names_module()


def role_default(role: str, name: str):
    return yaml.safe_load((PROJECT / "roles" / role / "defaults" / "main.yml").read_text())[name]


def ca_trust_path() -> str:
    """Where the hosts trust the inventory's CA: the dw_pki role's filter, with its default CA name
    (the roles' CA path defaults are templated from the same two)."""
    path = PROJECT / "roles" / "dw_pki" / "filter_plugins" / "dw_pki.py"
    spec = importlib.util.spec_from_file_location("dw_pki_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.trust_path(role_default("dw_pki", "dw_pki_ca_name"))


STANZA = role_default("pgbackrest", "pgbackrest_stanza")
# pgBackRest inside a host, as the user that owns the cluster and the repositories.
PGBACKREST = f"runuser -u postgres -- pgbackrest --stanza={STANZA}"


def backups(host) -> list[dict]:
    """The stanza's backups as `pgbackrest info` lists them on that host, oldest first."""
    return json.loads(host.check_output(f"{PGBACKREST} info --output=json"))[0]["backup"]


def reached(source, targets: list[tuple[str, int]], timeout: int = 4) -> set[tuple[str, int]]:
    """Which of the (address, port) targets accept a TCP connection from the source host in time,
    all probed at once: a firewall's drop costs the whole timeout, once per batch instead of once
    per probe."""
    probes = " ".join(
        f"(timeout {timeout} bash -c '</dev/tcp/{address}/{port}' 2>/dev/null && echo {address}:{port}) &"
        for address, port in targets
    )
    out = source.run(f"{probes} wait").stdout
    return {(address, int(port)) for address, port in (line.rsplit(":", 1) for line in out.split())}


def inventory_environments() -> list[dict]:
    """dw_environments of the local inventory, each with its derived names (unit, edge_port, ...)."""
    group_vars = yaml.safe_load((INVENTORY / "group_vars" / "all" / "vars.yml").read_text())
    return NAMES.resolve(group_vars["dw_environments"])


def read_vault() -> dict:
    out = subprocess.run(
        [
            "ansible-vault",
            "view",
            "--vault-password-file",
            str(INVENTORY / "vault-password.txt"),
            str(INVENTORY / "group_vars" / "all" / "vault.yml"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return yaml.safe_load(out)


@pytest.fixture(scope="session")
def environments() -> list[dict]:
    """The inventory's environments, as dicts with their derived names (default and cluster wrap
    them in a dataclass fixture of their own)."""
    return inventory_environments()


@pytest.fixture(scope="session")
def vault() -> dict:
    return read_vault()


T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 1.0) -> T:
    """check()'s first truthy value, tried every interval seconds; fails naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def plain_output(output: str) -> str:
    """ansible-playbook's output without colours (molecule forces them) and with its line wrapping
    undone (the YAML callback wraps long messages): what a test searches for a message."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", output).split())


def market_record(symbol: str, ts: str | None = None, **fields: object) -> dict:
    """One valid OHLCV+VWAP record, as the API takes it: at ts (now by default), fields overriding."""
    return {
        "symbol": symbol,
        "ts": ts or datetime.now(UTC).isoformat(),
        "open": "101.25",
        "high": "102.5",
        "low": "100.75",
        "close": "101.9",
        "volume": 1200,
        "vwap": "101.6",
    } | fields


def api_key(vault: dict, environment: str) -> str:
    """The API key of the environment named (the first, while a rotation keeps two)."""
    key = vault["vault_ingest_api_keys"][environment]
    return key if isinstance(key, str) else key[0]


def run_playbook(
    playbook: str, *args: str, timeout: int = 900, inventory: str | os.PathLike | None = None
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook (a path under playbooks/, or ../site.yml) against the scenario's instances
    (or another inventory file naming them), with the project's roles and the local inventory's
    vault; the output is returned, not checked."""
    # The roles, the vault, the connection settings: molecule gives its verifier the provisioner's
    # environment (.config/molecule/config.yml), so a test's playbook runs as the converge did.
    env = os.environ | {
        "ANSIBLE_NOCOLOR": "1",
        # A connection refused or reset (a host just recreated or restarted) is tried again.
        "ANSIBLE_SSH_RETRIES": "3",
    }
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory or os.environ["MOLECULE_INVENTORY_FILE"]),
            str(PROJECT / "playbooks" / playbook),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def certificate_fingerprints(host, path: str) -> list[str]:
    """The SHA-256 fingerprints (hex) of the certificates in a PEM file on the host, sorted."""
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", host.file(path).content_string, re.S)
    return sorted(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest() for pem in pems)


def issuer_key_id(host, path: str) -> str:
    """The authority key identifier of the certificate at path on the host: which CA signed it."""
    return host.check_output(f"openssl x509 -in {path} -noout -ext authorityKeyIdentifier | tail -n 1").strip()


def authorize_deploy_key(container: str) -> None:
    """A container made by a test, not by molecule: authorize this run's deploy key in it, as
    molecule/common/ssh.yml does at prepare, so Ansible reaches it over SSH as the others."""
    key = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "deploy_ed25519.pub").read_text()
    script = (
        "install -d -m 0700 -o deploy -g deploy ~deploy/.ssh"
        " && install -m 0600 -o deploy -g deploy /dev/stdin ~deploy/.ssh/authorized_keys"
    )
    subprocess.run(
        ["podman", "exec", "-i", container, "sh", "-c", script], input=key, check=True, capture_output=True, text=True
    )


def platforms(scenario: Path) -> dict[str, dict]:
    """The scenario's hosts as its molecule.yml gives them to molecule, by name, each with its pinned
    address on the scenario's network (`address`, from its --ip= option; None when not pinned)."""
    hosts = {}
    for platform in yaml.safe_load((scenario / "molecule.yml").read_text())["platforms"]:
        pinned = [o.split("=", 1)[1] for o in platform.get("extra_opts", []) if o.startswith("--ip=")]
        hosts[platform["name"]] = {**platform, "address": pinned[0] if pinned else None}
    return hosts


def fresh_container(scenario: Path, name: str, timeout: float = 60) -> None:
    """A lost host's replacement: a new container of that name, with the options molecule gives it
    (the scenario's molecule.yml: image, capabilities, network and pinned address, /etc/hosts) and
    no data, booted and reachable over SSH as deploy."""
    platform = platforms(scenario)[name]
    argv = ["podman", "run", "-d", "--name", name, "--hostname", name, f"--systemd={platform['systemd']}"]
    argv += [f"--cap-add={cap}" for cap in platform.get("capabilities", [])]
    argv += [f"--add-host={host}:{ip}" for host, ip in platform["etc_hosts"].items()]
    argv += [*platform.get("extra_opts", []), platform["image"], platform["command"]]
    subprocess.run(argv, check=True, capture_output=True, text=True)

    def booted() -> bool:
        state = subprocess.run(
            ["podman", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True
        )
        return state.stdout.strip() in ("running", "degraded")

    wait_for(booted, timeout, f"{name}'s systemd to come up")
    authorize_deploy_key(name)
    # Ansible's SSH master for the lost host (control_path %h-%p-%r, kept open after its last use)
    # still holds a connection to the dead container: a new session through it would fail.
    for socket in (Path.home() / ".ansible" / "cp").glob(f"{platform['address']}-*"):
        socket.unlink(missing_ok=True)


def start_load(host, workdir: str, targets: list[dict]) -> None:
    """Start load.py inside the host as a transient unit; targets as load.py documents them."""
    host.check_output(f"rm -rf {workdir} && install -d -m 0700 {workdir}")
    host.check_output(f"umask 077; printf '%s' {shlex.quote(json.dumps(targets))} > {workdir}/targets.json")
    load_py = (Path(__file__).parent / "load.py").read_text()
    host.check_output(f"cat > {workdir}/load.py <<'EOF'\n{load_py}\nEOF")
    unit = Path(workdir).name
    host.check_output(f"systemd-run --unit={unit} --collect python3 {workdir}/load.py {workdir}")
    for _ in range(50):
        if host.file(f"{workdir}/started").exists:
            return
        time.sleep(0.2)
    raise AssertionError("the load generator did not start")


def stop_load(host, workdir: str, timeout: float = 30) -> dict:
    """Stop it and return its result: per environment name, sent, acked and failures (timeout:
    seconds a request in flight may still take)."""
    host.check_output(f"touch {workdir}/stop")
    for _ in range(int(timeout / 0.2)):
        if host.file(f"{workdir}/result.json").exists:
            return json.loads(host.file(f"{workdir}/result.json").content_string)
        time.sleep(0.2)
    raise AssertionError("the load generator did not finish")


def burst(host, workdir: str, targets: list[dict], seconds: float = 2) -> dict:
    """A few seconds of load (start_load's targets) that must be fully acknowledged: writes a test
    needs in place before it acts, not a measurement."""
    start_load(host, workdir, targets)
    time.sleep(seconds)
    result = stop_load(host, workdir)
    for target in targets:
        stats = result[target["name"]]
        assert stats["acked"] > 0 and stats["failures"] == [], (target["name"], stats["failures"][:5])
    return result


@contextmanager
def unwritable(host, path: str, mode: str = "0500") -> Iterator[None]:
    """A repository directory a backup cannot write (the fault the backup tests inject), its own
    mode back afterwards however the block ends."""
    before = host.check_output(f"stat -c %a {shlex.quote(path)}")
    host.check_output(f"chmod {mode} {shlex.quote(path)}")
    try:
        yield
    finally:
        host.check_output(f"chmod {before} {shlex.quote(path)}")

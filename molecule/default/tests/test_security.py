"""Security, measured: unit exposure scores, the sandbox actually applied, file modes, refusals."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import time
import uuid
from pathlib import Path

from conftest import API_CONFIG_DIR, PROJECT, api_key, run_playbook, start_load, stop_load
from support import certificate_fingerprints, issuer_key_id, plain_output, role_default

MAX_EXPOSURE = 2.0


def _project_units(host) -> list[str]:
    """The services the roles install (under /etc/systemd/system) or sandbox with a drop-in
    (PostgreSQL's cluster unit, nginx), not the ones Debian's packages ship unused (such as
    pgbackrest.service, pgBackRest's TLS server, which nothing here enables)."""
    out = host.check_output(
        "cd /etc/systemd/system && ls dw-api-*.service market-data-simulator.service pgbackrest-*.service"
        " dw-backup-metrics.service dw-certificate-metrics.service"
        " && ls -d postgresql@*.service.d nginx.service.d prometheus*.service.d | sed 's/[.]d$//'"
    )
    # The unit-failure hook is a template: score the instance a backup's failure starts.
    return sorted([*out.split(), "dw-unit-failed@pgbackrest-daily.service.service"])


def test_every_project_unit_scores_low_exposure(host, environments):
    units = _project_units(host)
    assert {f"{e.unit}.service" for e in environments} | {"market-data-simulator.service", "nginx.service"} <= set(
        units
    )
    assert any(unit.startswith("postgresql@") for unit in units), units
    assert {
        "prometheus.service",
        "prometheus-alertmanager.service",
        "prometheus-node-exporter.service",
        "prometheus-postgres-exporter.service",
        "dw-backup-metrics.service",
        "dw-certificate-metrics.service",
    } <= set(units)
    scores = {}
    for unit in units:
        out = host.check_output(f"systemd-analyze security --no-pager {unit}")
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
        assert match, out[-500:]
        scores[unit] = float(match.group(1))
    print("exposure scores:", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_sandbox_is_applied_to_the_running_api(host, environments):
    # The container has CAP_SYS_ADMIN, as a real host's systemd does, so namespaces are real:
    # the API sees / read-only and its own /tmp, and has no capabilities at all.
    pid = host.check_output(f"systemctl show -P MainPID {environments[0].unit}.service")
    assert pid != "0"
    mounts = host.check_output(f"cat /proc/{pid}/mountinfo")
    root_options = next(line.split()[5] for line in mounts.splitlines() if line.split()[4] == "/")
    assert root_options.split(",")[0] == "ro", root_options
    assert any(line.split()[4] == "/tmp" for line in mounts.splitlines()), "no private /tmp"
    status = host.check_output(f"cat /proc/{pid}/status")
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert re.search(r"^Seccomp:\s+2$", status, re.M)
    # Each environment's API runs as a user of its own, named after its unit.
    for env in environments:
        pid = host.check_output(f"systemctl show -P MainPID {env.unit}.service")
        assert host.check_output(f"stat -c %U /proc/{pid}") == env.unit


def test_no_environment_can_read_another_environments_secrets(host, environments, vault):
    """Code running as dev (a bad release tried there first) cannot reach prod's database password
    or API key: not in the env files (root's alone, systemd reads them), not in the other units'
    process environments, and the simulator's file holds dev's key and nothing of the others."""
    pids = {env.name: host.check_output(f"systemctl show -P MainPID {env.unit}.service") for env in environments}
    for reader in environments:
        for env in environments:
            if env is not reader:
                opened = host.run(f"runuser -u {reader.unit} -- cat {env.env_file} /proc/{pids[env.name]}/environ")
                # A bool, so a failure names who read what without printing the secrets read.
                read_something = bool(opened.stdout)
                assert opened.rc != 0 and not read_something, (reader.unit, env.name)
                assert "Permission denied" in opened.stderr, opened.stderr
        # Root's own read of the running process shows the secret is really there to protect.
        environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pids[reader.name]}/environ")
        assert f"API_KEYS={vault['vault_ingest_api_keys'][reader.name]}" in environ.splitlines()
    simulator_env = host.file("/etc/dw-simulator/simulator.env")
    assert (simulator_env.mode, simulator_env.user, simulator_env.group) == (0o600, "root", "root")
    content = simulator_env.content_string
    passwords = vault["vault_postgresql_api_passwords"]
    secrets = vault["vault_ingest_api_keys"] | {f"db-{name}": value for name, value in passwords.items()}
    assert [name for name, value in secrets.items() if value in content] == ["dev"]
    assert host.run("runuser -u dw-simulator -- cat /etc/dw-simulator/simulator.env").rc != 0
    # The shared account every environment ran as before is gone.
    assert not host.user("dw-api").exists


def test_the_edge_passes_only_the_ingest_routes_the_contract_and_liveness(host, environments):
    env = environments[0]
    edge = f"https://127.0.0.1:{env.names['edge_port']}"
    status = "curl -sk -o /dev/null -w '%{http_code}' "
    for path in ("/openapi.json", "/health"):
        assert host.check_output(status + edge + path) == "200", path
    # The interactive docs, the database's state and the metrics stay on the box: the edge's own
    # 404 in the API's shape, though the API itself answers them on loopback.
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect", "/ready", "/metrics"):
        body = host.check_output(f"curl -sk -w '\\n%{{http_code}}' {edge}{path}").splitlines()
        assert body[-1] == "404" and json.loads(body[0]) == {"detail": "Not Found"}, (path, body)
    for path in ("/docs", "/ready", "/metrics"):
        assert host.check_output(f"{status}http://127.0.0.1:{env.api_port}{path}") == "200", path


# What a second CA would change on the host: its trust in the CA (the copy and the bundle
# update-ca-certificates builds) and every certificate a role lists, each with its checksum.
TLS_STATE = (
    "{ echo /usr/local/share/ca-certificates/dw-platform-ca.crt; echo /etc/ssl/certs/ca-certificates.crt;"
    " ls -d /etc/dw-certificates.d/*.list; grep -hv '^#' /etc/dw-certificates.d/*.list; }"
    " | sort -u | xargs -r sha256sum"
)


def test_a_controller_without_the_ca_files_stops_before_replacing_the_ca(host, tmp_path):
    """A second clone (its inventory directory has no .pki/) must not mint a new CA with the same
    name and re-sign the host (issue #27): playbooks/pki.yml stops, changes nothing, names the CA
    the host trusts by its SHA-256 fingerprint and says what to do."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    assert (inventory.parent / ".pki").is_dir()  # the first controller's CA, which this clone lacks
    clone = tmp_path / "inventory"
    clone.mkdir()
    shutil.copy(inventory, clone / inventory.name)
    (clone / "group_vars").symlink_to(inventory.parent / "group_vars")
    (clone / "host_vars").symlink_to(inventory.parent / "host_vars")
    trust = "/usr/local/share/ca-certificates/dw-platform-ca.crt"
    fingerprint = host.check_output(f"openssl x509 -in {trust} -noout -fingerprint -sha256").split("=", 1)[1].upper()
    state = host.check_output(TLS_STATE)
    # The CA's copy and the edge's certificate (signed by it) at least, each with its checksum.
    assert trust in state and "/etc/dw-certificates.d/ingest_edge.list" in state and "/dw-edge.crt" in state, state

    result = run_playbook("pki.yml", inventory=clone / inventory.name, timeout=120)

    # Without colours (molecule forces them on) and with the YAML callback's wrapping undone.
    output = plain_output(result.stdout + result.stderr)
    instance = "dw-molecule-bookworm"
    assert result.returncode != 0, output[-3000:]
    assert f"Stopped before changing anything: {instance} already trusts a CA of this project, {trust}" in output, (
        output[-3000:]
    )
    assert f"SHA-256 fingerprint {fingerprint}, valid until" in output, (fingerprint, output[-3000:])
    assert f"This controller has no CA at {clone}/.pki/dw-platform-ca.crt" in output, output[-3000:]
    assert "set dw_pki_ca_dir to the shared directory that holds it" in output
    assert "-e dw_pki_replace_ca=true" in output
    # The preflight said so before any host was contacted.
    assert f"WARNING: no private CA at {clone}/.pki/dw-platform-ca.crt on this controller" in output
    assert not (clone / ".pki").exists()
    assert re.search(r"changed=0 ", output), output[-2000:]
    assert host.check_output(TLS_STATE) == state


CA_LOAD_DIR = "/run/ca-rotation-load"


def test_the_ca_rotates_under_load_through_the_edge_without_a_failed_request(host, psql, environments, vault):
    """playbooks/rotate-ca.yml's three steps (issue #27) while clients write through the TLS edge,
    each request on a new TLS connection that verifies against the system trust store as any client
    given the inventory's CA does: the new CA is trusted beside the old one, every certificate is
    reissued from it, and the old one is retired, with zero failed requests and every acknowledged
    record stored (a symbol of this run's own: the rows it stored are exactly those with it)."""
    pki = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / ".pki"
    trust = "/usr/local/share/ca-certificates/dw-platform-ca.crt"
    edge_cert = f"{role_default('ingest_edge', 'ingest_edge_tls_dir')}/dw-edge.crt"
    assert host.file(edge_cert).exists
    old_ca = certificate_fingerprints(host, trust)
    assert len(old_ca) == 1
    old_issuer = issuer_key_id(host, edge_cert)
    targets = [
        {
            "name": env.name,
            "url": f"https://localhost:{env.names['edge_port']}/ingest/market-data/",
            "key": api_key(vault, env.name),
            "symbol": f"CA{uuid.uuid4().hex[:6].upper()}{env.name[0].upper()}",
            # A new TLS connection per request, each verified against the trust store as it is then;
            # about 10 a second each, under the edge's per-client rate limit.
            "keepalive": False,
            "pause": 0.1,
        }
        for env in environments
        if env.name in ("prod", "dev")
    ]
    start_load(host, CA_LOAD_DIR, targets)
    steps = {}
    try:
        for step in ("trust", "switch", "retire"):
            started = time.monotonic()
            result = run_playbook("rotate-ca.yml", "-e", f"dw_pki_rotation_step={step}")
            assert result.returncode == 0, (step, plain_output(result.stdout + result.stderr)[-4000:])
            steps[step] = {
                "seconds": round(time.monotonic() - started, 1),
                "trusted": certificate_fingerprints(host, trust),
                "edge_issuer": issuer_key_id(host, edge_cert),
                "bundle": host.check_output(f"sha256sum {trust}"),
                "controller": sorted(p.relative_to(pki).as_posix() for p in pki.rglob("*") if p.is_file()),
            }
    finally:
        result = stop_load(host, CA_LOAD_DIR)
    print(
        f"CA rotation steps: { {step: facts['seconds'] for step, facts in steps.items()} } s;"
        f" requests: { {name: (stats['sent'], len(stats['failures'])) for name, stats in result.items()} }"
    )

    # trust: the old CA and the new one, the edge still signed by the old.
    assert old_ca[0] in steps["trust"]["trusted"] and len(steps["trust"]["trusted"]) == 2, steps["trust"]
    new_ca = next(fp for fp in steps["trust"]["trusted"] if fp != old_ca[0])
    assert steps["trust"]["edge_issuer"] == old_issuer
    assert [p for p in steps["trust"]["controller"] if not p.startswith("retired/")] == [
        "dw-platform-ca.crt",
        "dw-platform-ca.key",
        "dw-platform-ca.next.crt",
        "dw-platform-ca.next.key",
    ]
    # switch: the same trust file (sorted, so nothing restarts for it), the edge reissued by the new CA.
    assert steps["switch"]["bundle"] == steps["trust"]["bundle"]
    assert steps["switch"]["edge_issuer"] != old_issuer
    assert [p for p in steps["switch"]["controller"] if not p.startswith("retired/")] == [
        "dw-platform-ca.crt",
        "dw-platform-ca.key",
        "dw-platform-ca.retiring.crt",
        "dw-platform-ca.retiring.key",
    ]
    # retire: the new CA alone; the old one's key gone from the controller, its certificate kept.
    assert steps["retire"]["trusted"] == [new_ca], steps["retire"]
    assert steps["retire"]["edge_issuer"] == steps["switch"]["edge_issuer"]
    assert [p for p in steps["retire"]["controller"] if not p.startswith("retired/")] == [
        "dw-platform-ca.crt",
        "dw-platform-ca.key",
    ], steps["retire"]
    assert f"retired/dw-platform-ca-{old_ca[0][:16]}.crt" in steps["retire"]["controller"], steps["retire"]
    # The system bundle (what the clients verify against) lost the old CA.
    bundle = host.check_output(
        "openssl crl2pkcs7 -nocrl -certfile /etc/ssl/certs/ca-certificates.crt"
        " | openssl pkcs7 -print_certs -noout | grep -c '^subject=.*dw-platform private CA'"
    )
    assert bundle == "1", bundle

    for target in targets:
        stats = result[target["name"]]
        assert stats["failures"] == [], (target["name"], stats["failures"][:5])
        assert stats["acked"] > 0
        database = next(e.database for e in environments if e.name == target["name"])
        stored = int(
            psql.value(f"SELECT count(*) FROM staging.market_data WHERE symbol = '{target['symbol']}'", database)
        )
        assert stored == stats["acked"] == stats["sent"], (target["name"], stored, stats)


def test_file_modes(host, environments):
    data_dir = host.check_output("runuser -u postgres -- psql -X -A -t -c 'SHOW data_directory'")
    assert host.file(data_dir).mode == 0o700
    assert host.file(data_dir).user == "postgres"
    for env in environments:
        env_file = host.file(env.env_file)
        assert (env_file.mode, env_file.user, env_file.group) == (0o600, "root", "root")
    assert host.file(API_CONFIG_DIR).mode == 0o700
    # The directory earlier releases used is gone, with the secrets it held.
    assert not host.file("/etc/dw-ingest").exists
    conf = host.file("/etc/pgbackrest/pgbackrest.conf")
    if conf.exists:
        assert (conf.mode, conf.user) == (0o640, "postgres")


def test_opening_the_api_without_keys_is_refused():
    result = run_playbook(
        "app.yml", "--check", "-e", "ingest_api_bind_address=0.0.0.0", "-e", '{"ingest_api_keys": {}}', timeout=300
    )
    assert result.returncode != 0
    assert "ingest_api_keys.prod must be set" in result.stdout + result.stderr


def test_weak_or_shared_api_keys_are_refused(vault):
    keys = vault["vault_ingest_api_keys"]
    weak = {
        "prod": ["short-key", keys["prod"]],
        "dev": ["with a space " + keys["dev"]],
        "test": [keys["test"], keys["prod"]],
    }
    result = run_playbook("app.yml", "--check", "-e", json.dumps({"ingest_api_keys": weak}), timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ingest_api_keys.prod has a key shorter than 24 characters" in output
    assert "ingest_api_keys.dev has a key with a space" in output
    assert "ingest_api_keys.test shares a key with ingest_api_keys.prod" in output
    # Named, never printed.
    assert all(value not in output for value in keys.values())


# Files the scenario's own fixtures hold, not the project's: prepare.yml's S3 emulator and its key.
FIXTURES = ("/etc/dw-s3-emulator/", "/opt/dw-s3-emulator/")
# Where a converge writes files; PostgreSQL's data directory holds only SCRAM verifiers.
SCANNED = "/etc /opt /usr/local /srv /root /home /var/lib"


def _secret_table() -> list[tuple[str, str, str, int, set[str]]]:
    """The manual's table of secret files (docs/edge-and-security.md, "Secrets on the hosts"):
    (path glob, owner, group, mode, readers other than root)."""
    page = (PROJECT / "docs" / "edge-and-security.md").read_text()
    section = page.split("### Secrets on the hosts", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`/"):
            continue
        path = re.sub(r"<[^>]+>", "*", cells[0].strip("`"))
        owner_group, mode = cells[2].strip("`").split()
        owner, group = owner_group.split(":")
        readers = set(re.findall(r"`([a-z][a-z0-9_-]*)`", cells[3])) - {"root"}
        rows.append((path, owner, group, int(mode, 8), readers))
    return rows


def test_every_secret_file_is_in_the_security_docs_with_its_owner_mode_and_readers(host, environments, vault):
    table = _secret_table()
    assert len(table) >= 10, table

    def listed(path: str):
        return next((row for row in table if fnmatch.fnmatch(path, row[0])), None)

    # Every file holding a value of the vault, or a private key, is in the table.
    values = [v for v in _strings(vault) if len(v) >= 12]
    host.check_output(f"umask 077; printf '%s\\n' {' '.join(shlex.quote(v) for v in values)} > /root/.dw-patterns")
    holding = host.run(
        f"grep -rlsF -f /root/.dw-patterns --exclude=.dw-patterns {SCANNED} --exclude-dir=postgresql"
        "; grep -rlsE -- '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' /etc"
    ).stdout.split()
    host.run("rm -f /root/.dw-patterns")
    found = sorted({path for path in holding if not path.startswith(FIXTURES)})
    assert any(path.endswith("/prod.env") for path in found), found  # the scan itself works
    missing = [path for path in found if listed(path) is None]
    assert missing == [], "secret files missing from the table in docs/edge-and-security.md"

    # Each listed file that is here: owner, mode, and exactly its readers among the service users.
    users = {env.unit for env in environments} | {
        "dw-simulator",
        "www-data",
        "prometheus",
        "postgres",
        "etcd",
        "nobody",
    }
    users |= set().union(*(row[4] for row in table))
    users = sorted(user for user in users if host.user(user).exists)
    checked = []
    for pattern, owner, group, mode, readers in table:
        for path in host.run(f"ls -d {pattern} 2>/dev/null").stdout.split():
            file = host.file(path)
            assert (file.user, file.group, file.mode) == (owner, group, mode), path
            can_read = {user for user in users if host.run(f"runuser -u {user} -- test -r {path}").rc == 0}
            assert can_read == readers & set(users), (path, can_read)
            checked.append(path)
    assert len(checked) >= 6, checked


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []

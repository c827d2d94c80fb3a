"""The CA rotation (playbooks/rotate-ca.yml) on the production layout, under load: clients write
through the TLS edge from ha-client1, and ha-api1 opens a new verify-full database connection to
the cluster again and again, while the new CA is trusted, every certificate (the members'
PostgreSQL, Patroni and etcd, pgBackRest's TLS server, the edge, Prometheus') is reissued from it,
and the old CA is retired. Zero failed requests, zero failed connections, every acknowledged
record stored, and the cluster whole at the end.

Three converges of the six hosts take longer than CI's budget leaves for one test: CI rotates the
CA on the single host (molecule/default/tests/test_security.py), and this test runs when
DW_HA_CA_ROTATION is set (scripts/ha-figures sets it) and writes its figures to the measurements.
"""

from __future__ import annotations

import os
import shlex
import time
import uuid

import pytest
from conftest import (
    MEMBERS,
    api_key,
    healthy,
    leading,
    member,
    plain_output,
    psql,
    record,
    run_playbook,
    start_load,
    stop_load,
    wait_healthy,
)
from support import certificate_fingerprints, issuer_key_id, role_default

pytestmark = pytest.mark.skipif(
    not os.environ.get("DW_HA_CA_ROTATION"), reason="the production-layout CA rotation runs from scripts/ha-figures"
)

TRUST = "/usr/local/share/ca-certificates/dw-platform-ca.crt"
EDGE_LOAD = "/run/ca-rotation-load"
DB_LOOP = "/run/ca-rotation-db"


def _start_db_loop(api, vault, env) -> None:
    """New verify-full connections from ha-api1 to whichever member leads, one after another,
    each counted as ok or failed with its error."""
    login = psql(
        leading(),
        "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname IN "
        f"({', '.join(repr(name) for name in env['api_logins'].values())})",
        env["database"],
    )
    dsn = (
        f"host={','.join(MEMBERS)} dbname={env['database']} user={login} sslmode=verify-full"
        " sslrootcert=/etc/ssl/certs/ca-certificates.crt target_session_attrs=read-write connect_timeout=10"
    )
    script = (
        f"cd {DB_LOOP} && while [ ! -e stop ]; do"
        f" if out=$(psql -X -A -t {shlex.quote(dsn)} -c 'SELECT 1' 2>&1); then echo ok >> results;"
        " else echo \"failed: $out\" | tr '\\n' ' ' >> results; echo >> results; fi; sleep 0.2; done;"
        " touch done"
    )
    api.check_output(f"rm -rf {DB_LOOP} && install -d -m 0700 {DB_LOOP}")
    api.check_output(
        f"umask 077; printf '%s' {shlex.quote(vault['vault_postgresql_api_passwords'][env['name']])}"
        f" > {DB_LOOP}/password"
    )
    api.check_output(
        f"systemd-run --unit=ca-rotation-db --collect -p WorkingDirectory={DB_LOOP}"
        f" sh -c {shlex.quote(f'export PGPASSWORD=$(cat {DB_LOOP}/password); ' + script)}"
    )


def _stop_db_loop(api) -> list[str]:
    api.check_output(f"touch {DB_LOOP}/stop")
    for _ in range(100):
        if api.file(f"{DB_LOOP}/done").exists:
            break
        time.sleep(0.2)
    return api.file(f"{DB_LOOP}/results").content_string.splitlines()


def test_the_ca_rotates_under_load_with_no_failed_request_or_connection(client, api, repository, environments, vault):
    hosts = {name: member(name) for name in MEMBERS} | {"ha-api1": api, "ha-backup1": repository, "ha-client1": client}
    old_ca = certificate_fingerprints(api, TRUST)
    assert len(old_ca) == 1
    # Reissued at the switch: the edge's, and each member's etcd certificate.
    certificates = {
        "ha-api1": f"{role_default('ingest_edge', 'ingest_edge_tls_dir')}/dw-edge.crt",
        **{name: role_default("etcd", "etcd_tls_cert_path") for name in MEMBERS},
    }
    assert all(hosts[host].file(path).exists for host, path in certificates.items()), certificates
    old_issuers = {host: issuer_key_id(hosts[host], path) for host, path in certificates.items()}
    symbols = {e["name"]: f"CA{uuid.uuid4().hex[:6].upper()}{e['name'][0].upper()}" for e in environments[:2]}
    targets = [
        {
            "name": e["name"],
            "url": f"https://ha-api1:{e['edge_port']}/ingest/market-data/",
            "key": api_key(vault, e["name"]),
            "symbol": symbols[e["name"]],
            # The first opens a TLS connection per request (the strict case); the second keeps one.
            "keepalive": index > 0,
            "pause": 0.1,
        }
        for index, e in enumerate(environments[:2])
    ]
    start_load(client, EDGE_LOAD, targets)
    _start_db_loop(api, vault, environments[0])
    steps = {}
    try:
        for step in ("trust", "switch", "retire"):
            started = time.monotonic()
            result = run_playbook("rotate-ca.yml", "-e", f"dw_pki_rotation_step={step}", timeout=1800)
            assert result.returncode == 0, (step, plain_output(result.stdout + result.stderr)[-4000:])
            steps[step] = {
                "seconds": round(time.monotonic() - started, 1),
                "trusted": {name: certificate_fingerprints(host, TRUST) for name, host in hosts.items()},
                "issuers": {host: issuer_key_id(hosts[host], path) for host, path in certificates.items()},
            }
    finally:
        edge = stop_load(client, EDGE_LOAD, timeout=60)
        connections = _stop_db_loop(api)

    failed_connections = [line for line in connections if line != "ok"]
    record(
        {
            "measurement": "ca_rotation",
            "steps_seconds": {s: f["seconds"] for s, f in steps.items()},
            "edge_requests": {n: r["sent"] for n, r in edge.items()},
            "edge_failures": {n: len(r["failures"]) for n, r in edge.items()},
            "edge_stale_retries": {n: r["stale_retries"] for n, r in edge.items()},
            "db_connections": len(connections),
            "db_failures": len(failed_connections),
        }
    )
    new_ca = next(fp for fp in steps["trust"]["trusted"]["ha-api1"] if fp not in old_ca)
    for name in hosts:
        assert steps["trust"]["trusted"][name] == sorted([*old_ca, new_ca]), name
        assert steps["switch"]["trusted"][name] == steps["trust"]["trusted"][name], name
        assert steps["retire"]["trusted"][name] == [new_ca], name
    for host in certificates:
        assert steps["trust"]["issuers"][host] == old_issuers[host], host
        assert steps["switch"]["issuers"][host] != old_issuers[host], host

    assert failed_connections == [], failed_connections[:5]
    assert len(connections) > 50
    for env in environments[:2]:
        stats = edge[env["name"]]
        assert stats["failures"] == [], (env["name"], stats["failures"][:5])
        symbol = symbols[env["name"]]
        stored = int(
            psql(leading(), f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", env["database"])
        )
        assert stored == stats["acked"] == stats["sent"], (env["name"], stored, stats)
    # One leader, a synchronous standby, every member streaming on its timeline.
    assert healthy(wait_healthy()), "the cluster is not whole after the rotation"

"""Three database hosts under Patroni: the topology, replication of what the API writes, the
APIs following the leader, an unplanned failover and a planned switchover under load.

Failover and switchover run once each in CI; scripts/ha-figures repeats them (DW_HA_FAILOVER_RUNS,
DW_HA_SWITCHOVER_RUNS) for the figures. Every run appends its figures to
.cache/ha-measurements.jsonl (conftest.record) and prints them.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import time
import uuid

import pytest
from conftest import (
    MEMBERS,
    alertmanager_alerts,
    api_key,
    cluster_view,
    leader,
    member,
    plain_output,
    psql,
    record,
    run_playbook,
    running,
    start_load,
    stop_load,
    wait_for,
    wait_healthy,
)
from support import market_record

WORK = "/run/ha-load"
FAILOVER_RUNS = int(os.environ.get("DW_HA_FAILOVER_RUNS", "1"))
SWITCHOVER_RUNS = int(os.environ.get("DW_HA_SWITCHOVER_RUNS", "1"))


def _prod(environments) -> dict:
    return next(e for e in environments if e["name"] == "prod")


def _load_target(environments, vault, symbol: str) -> list[dict]:
    """One writer on ha-client1, through the edge on ha-api1 over HTTPS to the prod API, as the
    data collection team writes; a record every 50 ms."""
    prod = _prod(environments)
    return [
        {
            "name": "prod",
            "url": f"https://ha-api1:{prod['edge_port']}/ingest/market-data/",
            "key": api_key(vault, "prod"),
            "symbol": symbol,
            "keepalive": True,
            "pause": 0.05,
            "ack_times": True,
        }
    ]


def _stored_volumes(host, database: str, symbol: str) -> set[int]:
    rows = psql(host, f"SELECT volume FROM staging.market_data WHERE symbol = '{symbol}'", database)
    return {int(v) for v in rows.split()}


def test_one_leader_a_synchronous_standby_and_a_replica():
    view = wait_healthy()
    roles = sorted(m["Role"] for m in view)
    assert roles == ["Leader", "Replica", "Sync Standby"], view


def test_dcs_is_etcd_over_tls_with_client_certificates():
    db = member(MEMBERS[0])
    health = db.run(
        "ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 "
        "--cacert /usr/local/share/ca-certificates/dw-platform-ca.crt "
        "--cert /etc/etcd/tls/member.crt --key /etc/etcd/tls/member.key endpoint health --cluster"
    )
    report = health.stdout + health.stderr  # etcdctl writes the health report to stderr
    assert health.rc == 0 and report.count("is healthy") == len(MEMBERS), report
    # Without a client certificate the DCS refuses the client.
    bare = db.run(
        "ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 "
        "--cacert /usr/local/share/ca-certificates/dw-platform-ca.crt "
        "--command-timeout=3s get /service --prefix"
    )
    assert bare.rc != 0, bare.stdout
    plain = db.run("ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:2379 --command-timeout=3s get /service --prefix")
    assert plain.rc != 0, plain.stdout


CA = "/usr/local/share/ca-certificates/dw-platform-ca.crt"
# Certificates the private CA issued to the members for other purposes than etcd: each is valid,
# carries clientAuth, and sits on a member that may reach etcd's and the REST API's ports.
OTHER_CERTIFICATES = {
    "pgbackrest": ("/etc/pgbackrest/tls/host.crt", "/etc/pgbackrest/tls/host.key"),
    "postgresql": ("/etc/postgresql/15/main/tls/server.crt", "/etc/postgresql/15/main/tls/server.key"),
}
PATRONI_CLIENT = ("/etc/patroni/tls/client.crt", "/etc/patroni/tls/client.key")
ETCD_MEMBER = ("/etc/etcd/tls/member.crt", "/etc/etcd/tls/member.key")

# One HTTPS request from inside a member, with or without a client certificate: prints the HTTP
# status and the body, or ERROR and why (a refused handshake shows up here).
_HTTPS = r"""
import json, ssl, sys, urllib.error, urllib.request
url, cert, key, body = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=sys.argv[5])
if cert:
    ctx.load_cert_chain(cert, key)
request = urllib.request.Request(url, data=body.encode() if body else None)
try:
    with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode())
except Exception as exc:
    print("ERROR", repr(exc))
"""


def _https(host, url: str, cert: tuple[str, str] | None = None, body: str = "") -> tuple[str, str]:
    cert_file, key_file = cert or ("", "")
    out = host.check_output(
        f"python3 -c {shlex.quote(_HTTPS)} {shlex.quote(url)} '{cert_file}' '{key_file}' {shlex.quote(body)} {CA}"
    )
    status, _, rest = out.partition(" ")
    return status, rest


def _etcdctl(host, cert: tuple[str, str], args: str, user: str = ""):
    login = f"ETCDCTL_USER={user} " if user else ""
    return host.run(
        f"{login}ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 --cacert {CA} "
        f"--cert {cert[0]} --key {cert[1]} --command-timeout=5s {args}"
    )


@pytest.mark.parametrize("service", sorted(OTHER_CERTIFICATES))
def test_etcd_refuses_other_certificates_of_the_ca_and_patroni_keeps_working(service, vault):
    """The CA issues pgBackRest's and PostgreSQL's certificates too: neither opens the DCS, over
    gRPC (etcdctl) or the HTTP gateway (what Patroni speaks), while Patroni's login does."""
    wait_healthy()
    db = member(MEMBERS[0])
    cert = OTHER_CERTIFICATES[service]
    read = _etcdctl(db, cert, "get /service/ --prefix --keys-only")
    assert read.rc != 0 and "permission denied" in read.stderr, (read.stdout, read.stderr)
    write = _etcdctl(db, cert, "put /service/dw-main/leader intruder")
    assert write.rc != 0 and "permission denied" in write.stderr, (write.stdout, write.stderr)
    body = json.dumps({"key": "L3NlcnZpY2Uv", "range_end": "L3NlcnZpY2Uw", "keys_only": True})  # /service/ prefix
    status, answer = _https(db, "https://127.0.0.1:2379/v3/kv/range", cert, body)
    assert status != "200", answer
    # Patroni's own login, with its client certificate, reads its namespace; the cluster stays whole.
    patroni = _etcdctl(
        db, PATRONI_CLIENT, "get /service/ --prefix --keys-only", user=f"patroni:{vault['vault_etcd_patroni_password']}"
    )
    assert patroni.rc == 0 and "/service/dw-main/leader" in patroni.stdout, (patroni.stdout, patroni.stderr)
    outside = _etcdctl(db, PATRONI_CLIENT, "put /intruder x", user=f"patroni:{vault['vault_etcd_patroni_password']}")
    assert outside.rc != 0 and "permission denied" in outside.stderr, (outside.stdout, outside.stderr)
    wait_healthy()


@pytest.mark.parametrize("service", sorted(OTHER_CERTIFICATES))
def test_etcd_peers_accept_only_members_certificates(service):
    db = member(MEMBERS[0])
    peer = MEMBERS[1]
    status, answer = _https(db, f"https://{peer}:2380/version", OTHER_CERTIFICATES[service])
    assert status == "ERROR", (status, answer)
    status, answer = _https(db, f"https://{peer}:2380/version", ETCD_MEMBER)
    assert status == "200", (status, answer)


def test_rest_api_requires_a_client_certificate_of_the_ca():
    view = wait_healthy()
    lead = leader(view)
    caller = member(next(m["Member"] for m in view if m["Member"] != lead))
    for path in ("/cluster", "/leader", "/health", "/patroni"):
        status, answer = _https(caller, f"https://{lead}:8008{path}")
        assert status == "ERROR" or status.startswith("4"), (path, status, answer)
    status, answer = _https(caller, f"https://{lead}:8008/cluster", PATRONI_CLIENT)
    assert status == "200" and {m["name"] for m in json.loads(answer)["members"]} == set(MEMBERS), (status, answer)
    status, _ = _https(caller, f"https://{lead}:8008/leader", PATRONI_CLIENT)
    assert status == "200"


def test_replication_between_members_is_tls(environments):
    view = wait_healthy()
    lead = member(leader(view))
    rows = psql(
        lead, "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
    )
    assert rows == f"{len(MEMBERS) - 1}|{len(MEMBERS) - 1}", rows


def test_api_writes_reach_every_member_and_replicas_refuse_writes(api, environments, vault):
    view = wait_healthy()
    symbol = f"HA{uuid.uuid4().hex[:6].upper()}"
    for env in environments:
        body = json.dumps(market_record(symbol, "2026-01-02T03:04:05Z", volume=7))
        key = api_key(vault, env["name"])
        out = api.check_output(
            f"curl -sS -o /dev/null -w '%{{http_code}}' -H 'Content-Type: application/json' -H 'X-API-Key: {key}' "
            f"--data '{body}' http://127.0.0.1:{env['api_port']}/ingest/market-data/"
        )
        assert out == "200", (env["name"], out)
    for name in MEMBERS:
        for env in environments:
            wait_for(
                lambda n=name, e=env: _stored_volumes(member(n), e["database"], symbol) == {7},
                30,
                f"{env['database']} on {name} to hold the record",
            )
    replica = next(m["Member"] for m in view if m["Role"] != "Leader")
    insert = (
        "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
        f"VALUES ('{symbol}', now(), 1, 1, 1, 1, 1, 1)"
    )
    refused = psql(member(replica), insert, _prod(environments)["database"], check=False)
    assert refused.rc != 0 and "read-only transaction" in refused.stderr, refused.stderr


def test_api_env_names_every_member(api, environments):
    for env in environments:
        content = api.file(f"/etc/dw-api/{env['name']}.env").content_string
        url = next(line for line in content.splitlines() if line.startswith("DATABASE_URL="))
        assert "@ha-db1:5432,ha-db2:5432,ha-db3:5432/" in url, env["name"]
        assert "sslmode=verify-full" in url and "target_session_attrs=read-write" in url, env["name"]


def _failover_once(client, environments, vault) -> dict:
    view = wait_healthy()
    old = leader(view)
    symbol = f"FO{uuid.uuid4().hex[:6].upper()}"
    start_load(client, WORK, _load_target(environments, vault, symbol))
    time.sleep(5)
    killed_at = time.time()
    # The whole host: its address then swallows connection attempts, as a dead server's does.
    subprocess.run(["podman", "kill", "--signal", "KILL", old], check=True, capture_output=True)
    new = wait_for(lambda: (lead := leader(cluster_view())) not in (None, old) and lead, 90, "a new leader")
    promoted_at = time.time()
    time.sleep(10)
    result = stop_load(client, WORK, timeout=60)["prod"]

    acked = {n for n, _ in result["ack_times"]}
    after = sorted(t for _, t in result["ack_times"] if t > killed_at)
    assert after, f"no write succeeded after the kill: {result['failures'][-5:]}"
    # The recovery time: the longest stretch after the kill with no acknowledged write (a request
    # already committed when the leader died may still be acknowledged just after the kill).
    outage = max(b - a for a, b in zip([killed_at, *after], after, strict=False))
    stored = _stored_volumes(member(new), _prod(environments)["database"], symbol)
    lost = sorted(acked - stored)

    restarted_at = time.monotonic()
    subprocess.run(["podman", "start", old], check=True, capture_output=True)
    # The old leader comes back as a replica of the new timeline, with no operator step.
    view = wait_healthy(timeout=240)
    rejoined = time.monotonic() - restarted_at
    measurement = {
        "test": "failover",
        "old_leader": old,
        "new_leader": new,
        "promoted_s": round(promoted_at - killed_at, 1),
        "write_outage_s": round(outage, 2),
        "sent": result["sent"],
        "acked": len(acked),
        "lost": len(lost),
        "failed_requests": len(result["failures"]),
        "worst_latency_s": round(result["max_latency"], 2),
        "old_leader_rejoined_s": round(rejoined, 1),
        "old_leader_role": next(m["Role"] for m in view if m["Member"] == old),
        "failures": result["failures"][:5],
    }
    record(measurement)
    assert not lost, f"acknowledged writes missing after the failover: {lost[:20]}"
    # The write in flight on the killed leader is retried on the new one within the API's budget
    # (ingest_api_db_write_retry_seconds): the client sees latency, not an error.
    assert not result["failures"], result["failures"][:10]
    assert leader(view) == new
    # Monitoring saw it: DwPatroniFailover in Alertmanager, naming the new leader's timeline (an
    # alert still firing from an earlier switchover is resent with it within Prometheus' resend delay).
    summary_end = f"now on timeline {next(m['TL'] for m in view if m['Member'] == new)}"
    wait_for(
        lambda: [
            a for a in alertmanager_alerts("DwPatroniFailover") if a["annotations"]["summary"].endswith(summary_end)
        ],
        90,
        f"DwPatroniFailover ({summary_end}) in Alertmanager",
    )
    return measurement


def test_unplanned_failover_fails_no_request_and_loses_no_acknowledged_write(client, environments, vault):
    runs = [_failover_once(client, environments, vault) for _ in range(FAILOVER_RUNS)]
    _summary("failover", runs, ["write_outage_s", "promoted_s", "lost", "failed_requests", "old_leader_rejoined_s"])


def _switchover_once(client, environments, vault) -> dict:
    view = wait_healthy()
    old = leader(view)
    symbol = f"SW{uuid.uuid4().hex[:6].upper()}"
    start_load(client, WORK, _load_target(environments, vault, symbol))
    time.sleep(3)
    started = time.monotonic()
    switched = run_playbook("switchover.yml")
    took = time.monotonic() - started
    assert switched.returncode == 0, switched.stdout[-3000:]
    time.sleep(3)
    result = stop_load(client, WORK, timeout=60)["prod"]
    view = wait_healthy()
    new = leader(view)
    acked = {n for n, _ in result["ack_times"]}
    stored = _stored_volumes(member(new), _prod(environments)["database"], symbol)
    measurement = {
        "test": "switchover",
        "old_leader": old,
        "new_leader": new,
        "playbook_s": round(took, 1),
        "sent": result["sent"],
        "acked": len(acked),
        "failed_requests": len(result["failures"]),
        "worst_latency_s": round(result["max_latency"], 2),
        "lost": len(acked - stored),
        "failures": result["failures"][:5],
    }
    record(measurement)
    assert new != old
    assert not acked - stored
    assert not result["failures"], result["failures"][:10]
    return measurement


def test_planned_switchover_fails_no_request(client, environments, vault):
    runs = [_switchover_once(client, environments, vault) for _ in range(SWITCHOVER_RUNS)]
    _summary("switchover", runs, ["failed_requests", "worst_latency_s", "playbook_s"])


def _summary(name: str, runs: list[dict], keys: list[str]) -> None:
    summary = {"test": f"{name} summary", "runs": len(runs)}
    for key in keys:
        values = [r[key] for r in runs]
        summary[key] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    record(summary)


@pytest.fixture(autouse=True, scope="module")
def _every_member_running():
    """A test that fails midway may leave a member stopped: start it for the next one."""
    yield
    for name in MEMBERS:
        if not running(name):
            subprocess.run(["podman", "start", name], check=False, capture_output=True)


def test_reinit_rebuilds_a_replica_from_the_backup_repository():
    view = wait_healthy()
    replica = next(m["Member"] for m in view if m["Role"] == "Replica")
    host = member(replica)
    marker = "/var/lib/postgresql/15/main/reinit-marker"
    host.check_output(f"runuser -u postgres -- touch {marker}")
    restores = _completed_restores(host)
    since = host.check_output("date +%s")
    reinit = run_playbook("patroni-reinit.yml", "-e", f"patroni_reinit_member={replica}")
    assert reinit.returncode == 0, reinit.stdout[-3000:]
    # A new copy: the file only this replica had is gone. It came from the repository (pgBackRest
    # restored it, and Patroni says which method built it), not over the network from the leader.
    assert not host.file(marker).exists
    assert _completed_restores(host) == restores + 1
    journal = host.check_output(f"journalctl -u patroni --since @{since} --no-pager -o cat")
    assert "replica has been created using pgbackrest" in journal, journal[-2000:]
    wait_healthy()


def _completed_restores(host) -> int:
    log = host.file("/var/log/pgbackrest/main-cluster-restore.log")
    return log.content_string.count("restore command end: completed successfully") if log.exists else 0


def test_switchover_refuses_a_candidate_that_is_not_a_member_or_not_synchronous():
    before = leader(wait_healthy())
    out = run_playbook("switchover.yml", "-e", "patroni_switchover_candidate=nosuchhost")
    assert out.returncode != 0
    # The failure itself is reported on stderr.
    flat = plain_output(out.stdout + out.stderr)
    assert "Check the candidate" in flat and "nosuchhost" in flat, (out.stdout + out.stderr)[-2000:]
    # The asynchronous replica: Patroni would answer 412; the playbook says why before asking.
    view = wait_healthy()
    replica = next(m["Member"] for m in view if m["Role"] == "Replica")
    out = run_playbook("switchover.yml", "-e", f"patroni_switchover_candidate={replica}")
    assert out.returncode != 0
    flat = plain_output(out.stdout + out.stderr)
    assert f"{replica} is an asynchronous replica" in flat and "Switch over to the candidate" not in flat, flat[-2000:]
    assert leader(wait_healthy()) == before


@pytest.mark.parametrize("port", [2379, 2380, 8008])
def test_only_members_reach_etcd_and_the_rest_api(api, port):
    view = wait_healthy()
    lead = leader(view)
    probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{lead}/{port}'"
    assert api.run(probe).rc != 0, f"ha-api1 reached {lead}:{port}"
    other = next(m["Member"] for m in view if m["Member"] != lead)
    assert member(other).run(probe).rc == 0, f"{other} could not reach {lead}:{port}"


def test_rolling_restart_restarts_every_member_leader_last_and_fails_no_request(client, environments, vault):
    view = wait_healthy()
    # The first member in inventory order leads: the order in which the leader phase once switched
    # over three times, ending where it began, instead of once. Only a synchronous standby can take
    # over, so while the first member is the asynchronous replica, switch over to the synchronous
    # standby. Which replica the new leader then makes its synchronous standby is Patroni's choice
    # (often the first member, already streaming, but the old leader may rejoin first and be
    # chosen), so three switchovers are not always enough: keep going until the first member leads.
    for _ in range(8):
        if leader(view) == MEMBERS[0]:
            break
        sync = next(m["Member"] for m in view if m["Role"] == "Sync Standby")
        candidate = MEMBERS[0] if sync == MEMBERS[0] else sync
        switched = run_playbook("switchover.yml", "-e", f"patroni_switchover_candidate={candidate}", timeout=300)
        assert switched.returncode == 0, switched.stdout[-3000:]
        view = wait_healthy()
    old = leader(view)
    assert old == MEMBERS[0], view
    timeline = next(m["TL"] for m in view if m["Member"] == old)
    started = {name: psql(member(name), "SELECT pg_postmaster_start_time()") for name in MEMBERS}
    symbol = f"RR{uuid.uuid4().hex[:6].upper()}"
    start_load(client, WORK, _load_target(environments, vault, symbol))
    time.sleep(2)
    rolled = run_playbook("patroni-rolling-restart.yml", timeout=900)
    assert rolled.returncode == 0, rolled.stdout[-3000:]
    result = stop_load(client, WORK, timeout=60)["prod"]
    view = wait_healthy()
    restarted = {name: psql(member(name), "SELECT pg_postmaster_start_time()") for name in MEMBERS}
    record(
        {
            "test": "rolling restart",
            "sent": result["sent"],
            "failed_requests": len(result["failures"]),
            "worst_latency_s": round(result["max_latency"], 2),
        }
    )
    assert all(restarted[name] != started[name] for name in MEMBERS), (started, restarted)
    new = leader(view)
    assert new not in (None, old), view
    # One switchover: the timeline moved by one, and the playbook switched over once.
    assert next(m["TL"] for m in view if m["Member"] == new) == timeline + 1, view
    assert plain_output(rolled.stdout).count("Switch over to the candidate:") == 1, rolled.stdout[-3000:]
    assert not result["failures"], result["failures"][:10]

"""Losing every database host: the three members' containers are killed together (as a lost rack
dies) and removed with their data, etcd's with them; fresh ones take their names and addresses, and
one converge of site.yml brings the cluster back from the repository host. Patroni finds no cluster
in the new etcd, and the postgresql role, seeing that the repository holds a backup of the stanza,
has it restore the newest backup and replay the archived WAL (its custom bootstrap) instead of
running initdb: the same cluster (its system identifier), on a new timeline, whose new replicas
are restored from the repository too. Measured: the time from the fresh hosts to the three APIs
answering through the edge, and the acknowledged writes lost, each of which must have been
acknowledged within archive_timeout of the loss (the WAL not yet in the repository).

The file's name sorts last: the tests before it use the cluster this one replaces.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import yaml
from conftest import (
    MEMBERS,
    PGBACKREST,
    SCENARIO,
    api_key,
    leader,
    member,
    psql,
    record,
    run_playbook,
    start_load,
    stop_load,
    wait_for,
    wait_healthy,
)
from support import fresh_container

ARCHIVE_TIMEOUT = yaml.safe_load((SCENARIO / "group_vars" / "db_servers.yml").read_text())["postgresql_archive_timeout"]
# Beyond archive_timeout: the push of the closed segment to the repository host (archive-async)
# and the time between a commit and the client reading its 200.
SLACK = 10
WORK = "/run/cluster-loss-load"


def _answers(client, env: dict, key: str, symbol: str) -> bool:
    """One record through the edge, as the data collection team sends it: True on a 200."""
    body = (
        f'{{"symbol":"{symbol}","ts":"2026-01-02T03:04:05Z","open":"1","high":"1","low":"1",'
        f'"close":"1","volume":1,"vwap":"1"}}'
    )
    result = client.run(
        f"curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}' -H 'Content-Type: application/json' "
        f"-H {shlex.quote('X-API-Key: ' + key)} --data-binary {shlex.quote(body)} "
        f"https://ha-api1:{env['edge_port']}/ingest/market-data/"
    )
    return result.stdout.strip() == "200"


def test_every_database_host_lost_is_restored_from_the_repository_by_a_converge(
    client, repository, environments, vault
):
    before = wait_healthy()
    system_id = psql(member(leader(before)), "SELECT system_identifier FROM pg_control_system()")
    symbol = f"CL{uuid.uuid4().hex[:6].upper()}"
    start_load(
        client,
        WORK,
        [
            {
                "name": e["name"],
                "url": f"https://ha-api1:{e['edge_port']}/ingest/market-data/",
                "key": api_key(vault, e["name"]),
                "symbol": symbol,
                "keepalive": True,
                "pause": 0.1,
                "ack_times": True,
            }
            for e in environments
        ],
    )
    # Several archive_timeout switches: the older records are in the repository.
    time.sleep(2 * ARCHIVE_TIMEOUT + 10)

    killed_at = time.time()
    # SIGKILL to each container's init: the servers die at once, as with lost hardware (podman rm
    # -f alone would stop them gracefully, and PostgreSQL would archive on its way down).
    subprocess.run(["podman", "kill", "--signal", "KILL", *MEMBERS], check=True, capture_output=True)
    subprocess.run(["podman", "rm", "-f", *MEMBERS], check=True, capture_output=True)
    result = stop_load(client, WORK, timeout=60)

    fresh_at = time.monotonic()
    with ThreadPoolExecutor(len(MEMBERS)) as pool:
        list(pool.map(lambda name: fresh_container(SCENARIO, name), MEMBERS))
    # The database hosts only: the others lost nothing (docs/ha.md, "Losing every database host").
    converge = run_playbook("../site.yml", "--limit", "db_servers", timeout=1800)
    converged = time.monotonic() - fresh_at
    assert converge.returncode == 0, converge.stdout[-4000:]
    print(converge.stdout[converge.stdout.rfind("PLAY RECAP") :])
    # A symbol of its own: the load's symbol counts what survived, by volume.
    probe = f"CP{uuid.uuid4().hex[:6].upper()}"
    for env in environments:
        wait_for(
            lambda e=env: _answers(client, e, api_key(vault, e["name"]), probe),
            120,
            f"{env['name']} to answer through the edge",
        )
    answering = time.monotonic() - fresh_at

    after = wait_healthy(timeout=240)
    lead = member(leader(after))
    # The same cluster, restored by Patroni's custom bootstrap, not a new one made by initdb.
    assert psql(lead, "SELECT system_identifier FROM pg_control_system()") == system_id
    journal = lead.check_output("journalctl --no-pager -o cat -u patroni")
    assert "Running custom bootstrap script" in journal, journal[-3000:]
    assert after[0]["TL"] > before[0]["TL"], (before, after)
    built = {}
    for name in MEMBERS:
        if name != leader(after):
            found = re.search(
                r"replica has been created using (\w+)",
                member(name).check_output("journalctl --no-pager -o cat -u patroni"),
            )
            built[name] = found.group(1) if found else None
    # Archiving reaches the repository from the new timeline.
    assert repository.run(f"{PGBACKREST} check").rc == 0

    report = {}
    for env in environments:
        acked = dict(result[env["name"]]["ack_times"])
        stored = {
            int(v)
            for v in psql(
                lead, f"SELECT volume FROM staging.market_data WHERE symbol = '{symbol}'", env["database"]
            ).split()
        }
        lost = sorted(set(acked) - stored)
        oldest_lost_age = killed_at - acked[lost[0]] if lost else 0.0
        report[env["name"]] = {
            "acked": len(acked),
            "stored": len(stored & set(acked)),
            "lost": len(lost),
            "oldest_lost_s": round(oldest_lost_age, 1),
        }
    record(
        {
            "test": "cluster_loss",
            "archive_timeout_s": ARCHIVE_TIMEOUT,
            "converge_s": round(converged, 1),
            "fresh_hosts_to_apis_answering_s": round(answering, 1),
            "replicas_built_by": built,
            "environments": report,
        }
    )
    for name, figures in report.items():
        assert figures["acked"] > 100, (name, figures)
        # What was acknowledged before the last archive_timeout (and the push) survived, and some did.
        assert figures["stored"] > 0 and figures["oldest_lost_s"] <= ARCHIVE_TIMEOUT + SLACK, (name, figures)
    assert set(built.values()) == {"pgbackrest"}, built

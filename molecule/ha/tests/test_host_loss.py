"""Losing a member's host: the asynchronous replica's container is killed (as lost hardware dies)
and removed with its data; a fresh one takes its name and address, and a converge of site.yml
makes it a member again. etcd takes it back as a new member under the old name (roles/etcd:
the others still list its old self), and Patroni rebuilds its PostgreSQL from the repository host
(pgbackrest restore: the postgresql role sets pgBackRest up on a member before Patroni first
starts), not by copying the leader. Prod load through the edge meanwhile fails no request: the
leader and its synchronous standby never stopped.

It runs when DW_HA_REPLICA_HOST_LOSS is set (scripts/ha-figures sets it): CI's budget holds one
host-loss rehearsal, and CI runs the loss of every member (test_whole_cluster_loss.py), whose
fresh replicas are restored from the repository host the same way. What only this test shows is
etcd taking a rebuilt member back into a running cluster, and that nobody's request fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid

import pytest
from conftest import (
    SCENARIO,
    api_key,
    cluster_view,
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
from support import ca_trust_path, fresh_container, role_default

pytestmark = pytest.mark.skipif(
    not os.environ.get("DW_HA_REPLICA_HOST_LOSS"), reason="one member's host loss runs from scripts/ha-figures"
)

WORK = "/run/host-loss-load"


def test_a_lost_replica_host_rebuilt_by_a_converge_rejoins_the_cluster(client, environments, vault):
    view = wait_healthy()
    lost = next(m["Member"] for m in view if m["Role"] == "Replica")
    lead = leader(view)
    prod = next(e for e in environments if e["name"] == "prod")
    symbol = f"HL{uuid.uuid4().hex[:6].upper()}"
    start_load(
        client,
        WORK,
        [
            {
                "name": "prod",
                "url": f"https://ha-api1:{prod['edge_port']}/ingest/market-data/",
                "key": api_key(vault, "prod"),
                "symbol": symbol,
                "keepalive": True,
                "pause": 0.1,
            }
        ],
    )
    try:
        subprocess.run(["podman", "kill", "--signal", "KILL", lost], check=True, capture_output=True)
        subprocess.run(["podman", "rm", "-f", lost], check=True, capture_output=True)
        fresh_at = time.monotonic()
        fresh_container(SCENARIO, lost)
        # Only the new host, as docs/ha.md tells the operator: the others are not touched.
        converge = run_playbook("../site.yml", "--limit", lost, timeout=1500)
        converged = time.monotonic() - fresh_at
        assert converge.returncode == 0, converge.stdout[-4000:]
        print(converge.stdout[converge.stdout.rfind("PLAY RECAP") :])
        view = wait_healthy(timeout=240)
        rejoined = time.monotonic() - fresh_at
    finally:
        result = stop_load(client, WORK, timeout=60)["prod"]

    state = next(m for m in view if m["Member"] == lost)
    assert leader(view) == lead, view
    host = member(lost)
    # Patroni says which method made its data directory.
    journal = host.check_output("journalctl --no-pager -o cat -u patroni")
    built = re.search(r"replica has been created using (\w+)", journal)
    assert built, journal[-3000:]
    # etcd counts it as a member again, started, under its own name.
    etcd = {key: role_default("etcd", f"etcd_{key}") for key in ("client_port", "tls_cert_path", "tls_key_path")}
    etcd["tls_ca_path"] = ca_trust_path()
    listed = host.check_output(
        f"ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:{etcd['client_port']} --cacert {etcd['tls_ca_path']} "
        f"--cert {etcd['tls_cert_path']} --key {etcd['tls_key_path']} member list -w simple"
    )
    started = [line.split(", ")[2] for line in listed.splitlines() if ", started, " in line]
    assert sorted(started) == sorted(m["Member"] for m in view), listed
    # It holds what prod wrote while it was gone.
    stored = wait_for(
        lambda: (
            int(psql(host, f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", prod["database"]))
            >= result["acked"]
            and result["acked"]
        ),
        60,
        f"{lost} to hold prod's writes",
    )
    record(
        {
            "test": "replica_host_loss",
            "member": lost,
            "converge_s": round(converged, 1),
            "fresh_host_to_streaming_s": round(rejoined, 1),
            "role": state["Role"],
            "built_by": built.group(1),
            "sent": result["sent"],
            "acked": result["acked"],
            "failed_requests": len(result["failures"]),
        }
    )
    assert stored
    assert built.group(1) == "pgbackrest", journal[-3000:]
    assert result["failures"] == [], result["failures"][:5]
    assert result["acked"] == result["sent"] > 100, result
    assert cluster_view()

"""Restarting an API unit costs a client of the edge no request: the edge keeps the client's
connection and sends a request that could not reach the unit again (the POST is idempotent)."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from conftest import api_key, psql

WORK = "/run/edge-load"


def test_restarting_each_unit_under_load_fails_no_request(client1, api1, db1, environments, vault):
    targets = [{"name": e.name, "host": "api1", "port": e.edge_port, "key": api_key(vault, e)} for e in environments]
    before = {e.name: int(psql(db1, f"SELECT count(*) FROM staging.market_data WHERE symbol = 'EDGE{e.name.upper()}'",
                               e.database)) for e in environments}
    load = (Path(__file__).parents[1] / "files" / "edge_load.py").read_text()
    client1.check_output(f"rm -rf {WORK} && install -d -m 0700 {WORK}")
    client1.check_output(f"umask 077; printf '%s' {shlex.quote(json.dumps(targets))} > {WORK}/targets.json")
    client1.check_output(f"cat > {WORK}/edge_load.py <<'EOF'\n{load}\nEOF")
    client1.check_output(f"systemd-run --unit=edge-load --collect python3 {WORK}/edge_load.py {WORK}")
    for _ in range(50):
        if client1.file(f"{WORK}/started").exists:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the load generator did not start")

    restarts = 0
    for _ in range(2):
        for env in environments:
            time.sleep(1.5)
            api1.check_output(f"systemctl restart {env.unit}.service")
            restarts += 1
    time.sleep(2)
    client1.check_output(f"touch {WORK}/stop")
    for _ in range(150):
        if client1.file(f"{WORK}/result.json").exists:
            break
        time.sleep(0.2)
    result = json.loads(client1.file(f"{WORK}/result.json").content_string)

    print(f"restarts under load: {restarts}; per environment: "
          + ", ".join(f"{name} sent={r['sent']} acked={r['acked']}" for name, r in result.items()))
    for env in environments:
        stats = result[env.name]
        assert stats["failures"] == [], (env.name, stats["failures"][:5])
        assert stats["acked"] == stats["sent"] > 50, stats
        stored = int(psql(db1, f"SELECT count(*) FROM staging.market_data WHERE symbol = 'EDGE{env.name.upper()}'",
                          env.database)) - before[env.name]
        assert stored == stats["acked"], (env.name, stored, stats)

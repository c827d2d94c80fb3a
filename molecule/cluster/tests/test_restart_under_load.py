"""Restarting an API unit costs a client of the edge no request: the edge keeps the client's
connection and sends a request that could not reach the unit again (the POST is idempotent)."""

from __future__ import annotations

import time
import uuid

from conftest import api_key, psql, start_load, stop_load

WORK = "/run/edge-load"


def test_restarting_each_unit_under_load_fails_no_request(client1, api1, db1, environments, vault):
    # A symbol of this run's own per environment: the rows it stored are exactly those with it.
    symbols = {e.name: f"EDGE{uuid.uuid4().hex[:6].upper()}{e.name[0].upper()}" for e in environments}
    # One kept-alive connection per environment, as a client of the edge keeps it; about 12
    # requests a second each, under the edge's per-client rate limit.
    start_load(client1, WORK, [{"name": e.name, "url": f"https://api1:{e.edge_port}/ingest/market-data/",
                                "key": api_key(vault, e.name), "symbol": symbols[e.name], "keepalive": True,
                                "pause": 0.08} for e in environments])

    restarts = 0
    for _ in range(2):
        for env in environments:
            time.sleep(1.5)
            api1.check_output(f"systemctl restart {env.unit}.service")
            restarts += 1
    time.sleep(2)
    result = stop_load(client1, WORK)

    print(f"restarts under load: {restarts}; per environment: "
          + ", ".join(f"{name} sent={r['sent']} acked={r['acked']}" for name, r in result.items()))
    for env in environments:
        stats = result[env.name]
        assert stats["failures"] == [], (env.name, stats["failures"][:5])
        assert stats["acked"] == stats["sent"] > 50, stats
        stored = int(psql(db1, f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbols[env.name]}'",
                          env.database))
        assert stored == stats["acked"], (env.name, stored, stats)

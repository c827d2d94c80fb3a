"""A steady writer through the edge, as the data collection team's client: one kept-alive HTTPS
connection per environment, one new record per request, for at most MAX_SECONDS or until the
file stop appears. Writes result.json: per environment the records sent and acknowledged, and
every failure (an exception or a status other than 200). Bounded in time and count.

    python3 edge_load.py WORKDIR   (WORKDIR/targets.json: [{"name", "host", "port", "key"}])
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

WORK = Path(sys.argv[1])
MAX_SECONDS = 120
MAX_REQUESTS = 20_000


def drive(target: dict, results: dict) -> None:
    context = ssl.create_default_context()  # the system trust store, which holds the inventory's CA
    connection = http.client.HTTPSConnection(target["host"], target["port"], context=context, timeout=30)
    # Timestamps no earlier run wrote, so the stored rows are this run's alone.
    base = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3650)
    sent = acked = 0
    failures: list[str] = []
    started = time.monotonic()
    while not (WORK / "stop").exists() and time.monotonic() - started < MAX_SECONDS and sent < MAX_REQUESTS:
        sent += 1
        record = {"symbol": f"EDGE{target['name'].upper()}", "ts": (base + timedelta(seconds=sent)).isoformat(),
                  "open": "10.5", "high": "11", "low": "10", "close": "10.75", "volume": sent, "vwap": "10.6"}
        try:
            connection.request("POST", "/ingest/market-data/", body=json.dumps(record),
                               headers={"Content-Type": "application/json", "X-API-Key": target["key"]})
            response = connection.getresponse()
            body = response.read()
            if response.status == 200:
                acked += 1
            else:
                failures.append(f"{sent}: HTTP {response.status} {body[:200]!r}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{sent}: {type(exc).__name__}: {exc}")
            connection.close()
        time.sleep(0.01)
    connection.close()
    results[target["name"]] = {"sent": sent, "acked": acked, "failures": failures}


def main() -> None:
    targets = json.loads((WORK / "targets.json").read_text())
    results: dict = {}
    threads = [threading.Thread(target=drive, args=(t, results)) for t in targets]
    for thread in threads:
        thread.start()
    (WORK / "started").touch()
    for thread in threads:
        thread.join()
    (WORK / "result.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()

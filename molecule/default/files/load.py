"""Closed-loop load against every API environment until a stop file appears (or a time bound).

Runs inside the test host during a password rotation. Each request carries a distinct record;
the result file lists, per environment, how many requests were acknowledged and which failed,
so the test can check that nothing failed and nothing acknowledged is missing.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

WORK = Path("/run/rotation-load")
MAX_SECONDS = 600


def drive(name: str, port: int, key: str, results: dict) -> None:
    # Timestamps no earlier run wrote, so a rerun on the same instance counts only its own rows.
    base = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3650)
    acked = 0
    failures: list[str] = []
    n = 0
    started = time.monotonic()
    while not (WORK / "stop").exists() and time.monotonic() - started < MAX_SECONDS:
        n += 1
        record = {"symbol": f"ROT{name.upper()}", "ts": (base + timedelta(seconds=n)).isoformat(),
                  "open": "10.5", "high": "11", "low": "10", "close": "10.75", "volume": n, "vwap": "10.6"}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/ingest/market-data/", data=json.dumps(record).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": key}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status == 200:
                    acked += 1
                else:
                    failures.append(f"{n}: HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            failures.append(f"{n}: HTTP {exc.code} {exc.read()[:200]!r}")
        except OSError as exc:
            failures.append(f"{n}: {exc}")
        time.sleep(0.02)
    results[name] = {"sent": n, "acked": acked, "failures": failures}


def main() -> None:
    # [{"name":..., "port":..., "key":...}], from a root-only file so no key shows in ps or the journal
    targets = json.loads((WORK / "targets.json").read_text())
    results: dict = {}
    threads = [threading.Thread(target=drive, args=(t["name"], t["port"], t["key"], results)) for t in targets]
    for thread in threads:
        thread.start()
    (WORK / "started").touch()
    for thread in threads:
        thread.join()
    (WORK / "result.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()

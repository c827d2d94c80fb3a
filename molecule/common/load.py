"""Closed-loop load against API environments until a stop file appears (or a time bound).

Runs inside a test host, started by support.start_load: a password rotation writes through each
API directly, the ha scenario's client writes through the TLS edge. Each request carries a
distinct record; result.json lists per environment the requests sent, acknowledged (200) and
every failure, so a test can check that nothing failed and nothing acknowledged is missing, and
the longest a request took (max_latency, seconds), and how many requests were sent again once on
a new connection because the server had closed the kept-alive one under them (stale_retries).

    python3 load.py WORKDIR   (WORKDIR/targets.json, root-only: no key shows in ps or the journal:
                              [{"name", "url", "key", "symbol", "keepalive", "pause"}], and
                              optionally "ack_times": true, which lists in result.json each
                              acknowledged record's number (its volume) with the Unix time of its 200)
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

WORK = Path(sys.argv[1])
MAX_SECONDS = 600
MAX_REQUESTS = 50_000


def _connect(url: str) -> http.client.HTTPConnection:
    """A connection with a TLS context of its own: each reads the system trust store (which holds
    the inventory's CA) as it is then, as a client started anew would, so a CA rotation's new CA
    is trusted by the next connection after the trust store took it."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, context=ssl.create_default_context(), timeout=60)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)


# What a kept-alive connection closed by the server under a request raises before any response.
STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError)


def _post(connection: http.client.HTTPConnection, path: str, record: dict, key: str) -> tuple:
    connection.request(
        "POST", path, body=json.dumps(record), headers={"Content-Type": "application/json", "X-API-Key": key}
    )
    response = connection.getresponse()
    return response, response.read()


def drive(target: dict, results: dict) -> None:
    """keepalive: one connection for every request, as a client of the edge keeps it; otherwise a
    new connection per request."""
    path = urlsplit(target["url"]).path
    # Timestamps no earlier run wrote, so the stored rows are this run's alone.
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3650)
    connection = _connect(target["url"])
    sent = acked = stale_retries = 0
    failures: list[str] = []
    ack_times: list[tuple[int, float]] = []
    max_latency = 0.0
    started = time.monotonic()
    while not (WORK / "stop").exists() and time.monotonic() - started < MAX_SECONDS and sent < MAX_REQUESTS:
        sent += 1
        record = {
            "symbol": target["symbol"],
            "ts": (base + timedelta(seconds=sent)).isoformat(),
            "open": "10.5",
            "high": "11",
            "low": "10",
            "close": "10.75",
            "volume": sent,
            "vwap": "10.6",
        }
        sent_at = time.monotonic()
        try:
            try:
                reused = connection.sock is not None
                response, body = _post(connection, path, record, target["key"])
            except STALE_CONNECTION:
                # A kept-alive connection the server closed as this request went out (an edge
                # reloading for a new certificate closes its idle ones): sent again once on a new
                # connection, as HTTP clients do for an idempotent request (the POST is one).
                if not reused:
                    raise
                stale_retries += 1
                connection.close()
                connection = _connect(target["url"])
                response, body = _post(connection, path, record, target["key"])
            if response.status == 200:
                acked += 1
                if target.get("ack_times"):
                    ack_times.append((sent, time.time()))
            else:
                failures.append(f"{sent}: HTTP {response.status} {body[:200]!r}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{sent}: {type(exc).__name__}: {exc}")
            connection.close()
            connection = _connect(target["url"])
        max_latency = max(max_latency, time.monotonic() - sent_at)
        if not target["keepalive"]:
            connection.close()
            connection = _connect(target["url"])
        time.sleep(target["pause"])
    connection.close()
    results[target["name"]] = {
        "sent": sent,
        "acked": acked,
        "failures": failures,
        "max_latency": max_latency,
        "stale_retries": stale_retries,
    }
    if target.get("ack_times"):
        results[target["name"]]["ack_times"] = ack_times


def main() -> None:
    targets = json.loads((WORK / "targets.json").read_text())
    results: dict = {}
    threads = [threading.Thread(target=drive, args=(target, results)) for target in targets]
    for thread in threads:
        thread.start()
    (WORK / "started").touch()
    for thread in threads:
        thread.join()
    (WORK / "result.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()

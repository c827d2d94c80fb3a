"""Prometheus metrics of the service (GET /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "dw_ingest_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"]
)
# Which path answered (via: "direct" from the HTTP protocol, "asgi" through the app), and how long it
# took: a label of its own here, so the counter's series stay as dashboards know them.
REQUEST_SECONDS = Histogram(
    "dw_ingest_request_seconds",
    "Time from a request's start to its answer, by route, method, status and the path that answered",
    ["route", "method", "status", "via"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECORDS = Counter("dw_ingest_records_total", "Records by outcome", ["outcome"])
DB_SECONDS = Histogram(
    "dw_ingest_db_seconds",
    "Time spent in database writes",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_RETRIES = Counter("dw_ingest_db_retries_total", 'Writes tried again after a "not now" database error', ["operation"])
DB_POOL_RESETS = Counter(
    "dw_ingest_db_pool_resets_total", "Connection pools thrown away after losing their host (or its write access)"
)
POOL_IN_USE = Gauge("dw_ingest_pool_connections_in_use", "Database connections checked out of the pool")
GROUP_RECORDS = Histogram(
    "dw_ingest_group_commit_records",
    "Single-record requests written together by one INSERT (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)

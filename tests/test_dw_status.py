"""dw-status (roles/dw_status/files/dw-status) tells the truth: the APIs' client requests since
their process started, WAL archiving's last failure, a simulator that never ran, backups never
verified, one line per filesystem, ISO 8601 times in --json, and the alert query's outcome.

The APIs' /metrics text is the project's own: the service (app/dw_ingest) runs in a subprocess,
one per process life (a new subprocess is a restart), answers real requests (/health, /ready,
/metrics, a 401, a 422, a 503 with the database unreachable), and the 2xx a database would have
given are recorded through the service's own request accounting (core.log_request). systemd,
psql, pgbackrest and the filesystems are recorded answers, given through the script's Sources.

    python tests/test_dw_status.py --write-sample    rewrite the sample in docs/daily-operation.md
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from conftest import load_source

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "roles" / "dw_status" / "files" / "dw-status"
VERIFY_SCRIPT = REPO_ROOT / "roles" / "pgbackrest" / "files" / "dw-backup-verify"
DOCS = REPO_ROOT / "docs" / "daily-operation.md"
BEGIN, END = "<!-- dw-status sample: begin -->", "<!-- dw-status sample: end -->"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


dws = load_source(SCRIPT, "dw_status_script")
# The verify metrics are written by the script the verify timers run (its own render).
dbv = load_source(VERIFY_SCRIPT, "dw_backup_verify_script")

# --- The service's own /metrics ---------------------------------------------------------------------

_SERVICE = r"""
import json, socket, sys
sys.path.insert(0, "app")
from starlette.testclient import TestClient
from prometheus_client import generate_latest
from dw_ingest import core
from dw_ingest.app import create_app
from dw_ingest.config import Settings

plan = json.loads(sys.argv[1])
with socket.socket() as s:  # a port nothing listens on: the database is down
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
key = "k" * 32
settings = Settings.from_env({
    "DATABASE_URL": f"postgresql://dw@127.0.0.1:{port}/dw", "API_KEYS": key, "LOG_LEVEL": "critical",
    "DB_WRITE_RETRY_SECONDS": "0", "READY_TIMEOUT": "0.5", "DB_CONNECT_TIMEOUT": "0.5",
})
record = {"symbol": "ABC", "ts": "2026-11-24T14:30:00+00:00", "open": "100.5", "high": "101.25",
          "low": "99.75", "close": "100.9", "volume": 1000, "vwap": "100.4"}
auth = {"Authorization": "Bearer " + key}
requests = {
    "health": lambda c: c.get("/health"),
    "ready": lambda c: c.get("/ready"),
    "metrics": lambda c: c.get("/metrics"),
    "no_key": lambda c: c.post("/ingest/market-data/", json=record),
    "bad_body": lambda c: c.post("/ingest/market-data/", json={"symbol": 1}, headers=auth),
    "db_down": lambda c: c.post("/ingest/market-data/", json=record, headers=auth),
    "db_down_batch": lambda c: c.post("/ingest/market-data/batch", json=[record], headers=auth),
}
statuses = []
with TestClient(create_app(settings)) as client:
    for name in plan.get("requests", []):
        statuses.append(requests[name](client).status_code)
# What a reachable database would have answered: 200s, counted as the service counts every answer.
for route, count in plan.get("ok", {}).items():
    for _ in range(count):
        core.log_request("-", "POST", route, route, 200, core.begin(), None, "direct")
        core.end()
print(json.dumps({"statuses": statuses, "metrics": generate_latest().decode()}))
"""


@functools.cache
def _service_life(plan_json: str) -> tuple[list[int], str]:
    done = subprocess.run(
        [sys.executable, "-c", _SERVICE, plan_json],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return out["statuses"], out["metrics"]


def service_life(requests: tuple[str, ...] = (), ok: dict[str, int] | None = None) -> tuple[list[int], str]:
    """One life of the service process: the status codes of the requests made, then its /metrics."""
    return _service_life(json.dumps({"requests": list(requests), "ok": ok or {}}, sort_keys=True))


def pin_start(metrics: str, started: float) -> str:
    """The same /metrics with the process' start time pinned (for a sample that does not change)."""
    return re.sub(r"^process_start_time_seconds .*$", f"process_start_time_seconds {started:.2f}", metrics, flags=re.M)


# --- Recorded answers of systemd, PostgreSQL, pgBackRest and the filesystems ------------------------

NOW = 1795818662.0  # 2026-11-27T22:31:02Z
MIB = 1024 * 1024
GIB = 1024 * MIB


def at(seconds_ago: float) -> str:
    """A systemctl show timestamp (--timestamp=unix) that long before NOW."""
    return f"@{int(NOW - seconds_ago)}"


class Recorded(dws.Sources):
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def now(self) -> float:
        return NOW

    def unit_props(self, unit: str, *props: str) -> dict[str, str]:
        found = self.answers["units"].get(unit, {})
        return {p: found.get(p, "") for p in props}

    def http_get(self, url: str, auth: Any = None, timeout: float = 5) -> tuple[int, str]:
        self.asked.append(url)
        if url.endswith("/api/v1/alerts") and auth != ("dw-monitoring", "a-long-enough-password"):
            return 401, ""
        return self.answers["http"].get(url, (0, "[Errno 111] Connection refused"))

    def psql(self, pg: dict[str, Any], query: str) -> tuple[int, str]:
        return self.answers["psql"]["archiver" if "pg_stat_archiver" in query else "server"]

    def pgbackrest_info(self, stanza: str) -> tuple[int, str]:
        return 0, json.dumps(self.answers["pgbackrest_info"])

    def writable_by_postgres(self, path: str) -> bool | None:
        return self.answers["writable"].get(path)

    def filesystem(self, path: str) -> tuple[int, int, int] | None:
        return self.answers["filesystems"].get(path)

    def read_file(self, path: str) -> str | None:
        return self.answers["files"].get(path)


STANZA = "main-cluster"
REPO1 = "/var/lib/pgbackrest-local"
REPO2 = "/mnt/backup-secondary/pgbackrest"
DATA = "/var/lib/postgresql/15/main"
VERIFY_FILES = {r: f"/var/lib/prometheus/node-exporter/dw_pgbackrest_verify_repo{r}.prom" for r in (1, 2, 3)}
VERIFY_LIMIT = 8 * 86400  # the default period (7 d) plus margin (24 h)
CREDENTIALS = "/etc/dw-status-credentials.json"
PROMETHEUS = "http://127.0.0.1:9090"
ENVS = (("prod", 8001), ("dev", 8002), ("test", 8003))
CERT_FILE = "/var/lib/prometheus/node-exporter/dw_certificates.prom"
EDGE_CERT = "/etc/nginx/tls/dw-edge.crt"
CA_CERT = "/usr/local/share/ca-certificates/dw-platform-ca.crt"

# /etc/dw-status.json as the role writes it for the one-host setup (molecule's).
CONFIG: dict[str, Any] = {
    "apis": [{"name": n, "unit": f"dw-api-{n}", "port": p, "address": "127.0.0.1"} for n, p in ENVS],
    "postgresql": {"service": "postgresql@15-main.service", "port": 5432, "socket_dir": "/var/run/postgresql"},
    "pgbackrest": {
        "stanza": STANZA,
        "repos": [
            {
                "key": 1,
                "units": [
                    "pgbackrest-daily.service",
                    "pgbackrest-weekly-full-repo1.service",
                    "pgbackrest-verify-repo1.service",
                ],
                "path": REPO1,
                "writable_paths": [f"{REPO1}/backup/{STANZA}", f"{REPO1}/archive/{STANZA}"],
                "verify_metrics_file": VERIFY_FILES[1],
                "verify_max_age_seconds": VERIFY_LIMIT,
            },
            {
                "key": 2,
                "units": ["pgbackrest-weekly-full-repo2.service", "pgbackrest-verify-repo2.service"],
                "path": REPO2,
                "writable_paths": [f"{REPO2}/backup/{STANZA}", f"{REPO2}/archive/{STANZA}"],
                "verify_metrics_file": VERIFY_FILES[2],
                "verify_max_age_seconds": VERIFY_LIMIT,
            },
            {
                "key": 3,
                "units": ["pgbackrest-weekly-full-repo3.service", "pgbackrest-verify-repo3.service"],
                "path": "",
                "writable_paths": [],
                "verify_metrics_file": VERIFY_FILES[3],
                "verify_max_age_seconds": VERIFY_LIMIT,
            },
        ],
    },
    "timers": [
        {"unit": "pgbackrest-daily.timer", "expected_active": True},
        {"unit": "pgbackrest-weekly-full-repo1.timer", "expected_active": True},
        {"unit": "pgbackrest-weekly-full-repo2.timer", "expected_active": True},
        {"unit": "pgbackrest-weekly-full-repo3.timer", "expected_active": True},
        {"unit": "pgbackrest-verify-repo1.timer", "expected_active": True},
        {"unit": "pgbackrest-verify-repo2.timer", "expected_active": True},
        {"unit": "pgbackrest-verify-repo3.timer", "expected_active": True},
        {"unit": "dw-backup-metrics.timer", "expected_active": True},
        {"unit": "market-data-simulator.timer", "expected_active": True},
    ],
    "simulator": True,
    "certificates": {"metrics_file": CERT_FILE, "expiry_days": 21},
    "disk_paths": [DATA, REPO1, REPO2],
    "disk_max_percent": 85,
    "backup_max_age_hours": 26,
    "archive_max_lag_minutes": 15,
    "prometheus_url": PROMETHEUS,
    "prometheus_credentials": CREDENTIALS,
}


def backup(repo: int, kind: str, ended_ago: float, seconds: int, size: int) -> dict[str, Any]:
    """One entry of pgbackrest info --output=json's "backup" list (the fields dw-status reads and a few more)."""
    stop = int(NOW - ended_ago)
    label = time.strftime("%Y%m%d-%H%M%S", time.gmtime(stop - seconds)) + ("F" if kind == "full" else "F_I")
    return {
        "label": label,
        "type": kind,
        "database": {"id": 1, "repo-key": repo},
        "timestamp": {"start": stop - seconds, "stop": stop},
        "info": {"size": size * 4, "delta": size * 4, "repository": {"size": size, "delta": size}},
        "error": False,
        "archive": {"start": "000000010000000000000004", "stop": "000000010000000000000004"},
    }


def verify_metrics(repo: int, ran_ago: float, seconds: float, ok: bool = True, success_ago: float | None = None) -> str:
    """A repository's metrics file as dw-backup-verify leaves it: a verify that ended ran_ago and
    took seconds; after a failure, the success it keeps (success_ago). Scheduled for 30 days."""
    previous = dbv.schedule({}, VERIFY_LIMIT, NOW - 30 * 86400)
    if success_ago is not None:
        previous["dw_pgbackrest_verify_last_success_timestamp_seconds"] = int(NOW - success_ago)
    finished = NOW - ran_ago
    return dbv.render(STANZA, repo, dbv.outcome(previous, ok, finished - seconds, finished))


def alert(alertname: str, state: str, summary: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": alertname, **labels},
        "annotations": {"summary": summary},
        "state": state,
        "activeAt": "2026-11-27T22:30:35Z",
        "value": "1e+00",
    }


def certificate_metrics(certs: list[tuple[str, str, str, float]], unreadable: tuple[tuple[str, str], ...] = ()) -> str:
    """dw-certificate-metrics' textfile: (path, subject, owner, days from NOW to its end) per
    certificate, and (path, owner) per listed file it could not read."""
    lines = ["# TYPE dw_certificate_not_after_seconds gauge"]
    for path, subject, owner, days in certs:
        labels = f'path="{path}",subject="{subject}",owner="{owner}"'
        lines.append(f"dw_certificate_not_after_seconds{{{labels}}} {NOW + days * 86400:.0f}")
    lines.append("# TYPE dw_certificate_read_ok gauge")
    lines += [f'dw_certificate_read_ok{{path="{path}",owner="{owner}"}} 1' for path, _, owner, _ in certs]
    lines += [f'dw_certificate_read_ok{{path="{path}",owner="{owner}"}} 0' for path, owner in unreadable]
    lines += [
        "# TYPE dw_certificate_metrics_timestamp_seconds gauge",
        f"dw_certificate_metrics_timestamp_seconds {NOW - 1500}",
    ]
    return "\n".join(lines) + "\n"


# The one-host setup's certificates: the edge's (issued 8 days ago, valid 397 days) and the CA's.
SAMPLE_CERTS = [
    (CA_CERT, "CN=dw-platform private CA (local)", "dw_pki", 3640.8),
    (EDGE_CERT, "CN=dw-molecule-bookworm", "ingest_edge", 388.8),
]


def _sample_metrics() -> dict[str, str]:
    # The simulator's traffic since each API started (the unit starts of a converge), one 401 on prod.
    lives = {
        "prod": (service_life(("no_key",), {"/ingest/market-data/": 214})[1], 2410),
        "dev": (service_life((), {"/ingest/market-data/": 216})[1], 2402),
        "test": (service_life((), {"/ingest/market-data/": 216})[1], 2398),
    }
    return {name: pin_start(text, NOW - ago) for name, (text, ago) in lives.items()}


def server(metrics: dict[str, str] | None = None) -> dict[str, Any]:
    """The recorded answers of a plausible server: repo1 not writable (its daily backup failed),
    so one alert is firing; everything else healthy."""
    metrics = metrics if metrics is not None else _sample_metrics()
    http: dict[str, tuple[int, str]] = {}
    units: dict[str, dict[str, str]] = {}
    for name, port in ENVS:
        http[f"http://127.0.0.1:{port}/ready"] = (200, json.dumps({"status": "ready", "environment": name}))
        http[f"http://127.0.0.1:{port}/metrics"] = (200, metrics[name])
        units[f"dw-api-{name}.service"] = {"ActiveState": "active", "ActiveEnterTimestamp": at(2411)}
    http[f"{PROMETHEUS}/api/v1/alerts"] = (
        200,
        json.dumps(
            {
                "status": "success",
                "data": {
                    "alerts": [
                        alert(
                            "DwBackupUnitFailed",
                            "firing",
                            "pgbackrest-daily.service failed on dw-molecule-bookworm",
                            host="dw-molecule-bookworm",
                            name="pgbackrest-daily.service",
                            severity="critical",
                        ),
                        alert("DwApiDown", "pending", "dw-api-dev is down", severity="critical"),
                    ]
                },
            }
        ),
    )
    units["pgbackrest-daily.service"] = {"ActiveState": "failed", "ExecMainExitTimestamp": at(38)}
    for repo in (1, 2, 3):
        units[f"pgbackrest-weekly-full-repo{repo}.service"] = {"ActiveState": "inactive", "ExecMainExitTimestamp": ""}
        units[f"pgbackrest-verify-repo{repo}.service"] = {"ActiveState": "inactive", "ExecMainExitTimestamp": ""}
    nexts = {
        "pgbackrest-daily.timer": 14514,
        "pgbackrest-weekly-full-repo1.timer": 97162,
        "pgbackrest-weekly-full-repo2.timer": 104342,
        "pgbackrest-weekly-full-repo3.timer": 17969,
        # Tuesday, Wednesday and Thursday 04:30 (the defaults).
        "pgbackrest-verify-repo1.timer": 280738,
        "pgbackrest-verify-repo2.timer": 367138,
        "pgbackrest-verify-repo3.timer": 453538,
        "dw-backup-metrics.timer": 238,
        "market-data-simulator.timer": 863,
    }
    for unit, ahead in nexts.items():
        units[unit] = {"ActiveState": "active", "NextElapseUSecRealtime": at(-ahead), "LastTriggerUSec": at(38)}
    units["market-data-simulator.service"] = {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainStartTimestamp": at(38),
        "ExecMainStatus": "0",
    }
    return {
        "units": units,
        "http": http,
        "psql": {
            "server": (0, "15.18 (Debian 15.18-0+deb12u1)|6|100|f|0\n"),
            # Six failures while repo1's archive directory was unwritable, 31 min ago; archived since.
            "archiver": (
                0,
                f"00000001000000000000000D|{NOW - 14:.6f}|6|000000010000000000000007|{NOW - 1862:.6f}|0|0\n",
            ),
        },
        "pgbackrest_info": [
            {
                "name": STANZA,
                "status": {"code": 0, "message": "ok", "lock": {"backup": {"held": False}}},
                "repo": [{"key": key, "cipher": "none", "status": {"code": 0, "message": "ok"}} for key in (1, 2, 3)],
                "backup": [
                    backup(1, "full", 1938, 8, int(5.4 * MIB)),
                    backup(2, "full", 1914, 16, int(5.4 * MIB)),
                    backup(3, "full", 1902, 6, int(5.4 * MIB)),
                    backup(1, "incr", 372, 3, int(5.4 * MIB)),
                ],
                "archive": [],
                "db": [{"id": 1, "repo-key": 1, "system-id": 7441512345678901234, "version": "15"}],
            }
        ],
        "writable": {
            f"{REPO1}/backup/{STANZA}": False,
            f"{REPO1}/archive/{STANZA}": True,
            f"{REPO2}/backup/{STANZA}": True,
            f"{REPO2}/archive/{STANZA}": True,
        },
        # One filesystem holds the data directory and both local repositories (the test container).
        "filesystems": {p: (2049, int(78.8 * GIB), int(68.5 * GIB)) for p in (DATA, REPO1, REPO2)},
        "files": {
            # The converge verified each repository (playbooks/verify-backups.yml) 38 s ago.
            **{VERIFY_FILES[r]: verify_metrics(r, 38, seconds) for r, seconds in ((1, 4), (2, 6), (3, 9))},
            CREDENTIALS: json.dumps({"username": "dw-monitoring", "password": "a-long-enough-password"}),
            CERT_FILE: certificate_metrics(SAMPLE_CERTS),
        },
    }


def run_status(answers: dict[str, Any], cfg: dict[str, Any] | None = None) -> Any:
    return dws.collect(copy.deepcopy(cfg or CONFIG), Recorded(answers))


def sample_text() -> str:
    return "\n".join(dws.text_lines(run_status(server())))


def sample_block() -> str:
    return f"{BEGIN}\n\n```text\n{sample_text()}\n```\n\n{END}"


def write_sample() -> None:
    if DOCS.exists():
        text = DOCS.read_text()
        start, end = text.index(BEGIN), text.index(END) + len(END)
        DOCS.write_text(text[:start] + sample_block() + text[end:])
    else:
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(sample_block() + "\n")


# --- 1. The APIs: client requests by class, since the process started --------------------------------


def test_the_service_metrics_are_real() -> None:
    statuses, metrics = service_life(("health", "ready", "metrics", "no_key", "bad_body", "db_down", "db_down_batch"))
    # The app answered: alive, not ready (no database), metrics, 401, 422, 503, 503.
    assert statuses == [200, 503, 200, 401, 422, 503, 503]
    for route in ("/health", "/ready", "/metrics", "/ingest/market-data/", "/ingest/market-data/batch"):
        assert f'route="{route}"' in metrics
    assert re.search(r"^process_start_time_seconds \S+$", metrics, re.M)


def test_probes_are_not_counted_and_classes_are_apart() -> None:
    _, metrics = service_life(
        ("health", "ready", "metrics", "no_key", "bad_body", "db_down", "db_down_batch"),
        {"/ingest/market-data/": 5, "/ingest/market-data/batch": 2},
    )
    found = dws.client_requests(metrics)
    # /health 200, /ready 503 and /metrics 200 are in the text but are not client traffic.
    assert found["counts"] == {"2xx": 7, "4xx": 2, "5xx": 2, "other": 0}
    assert found["process_start"] is not None


def test_a_restart_starts_the_counts_afresh_and_a_first_5xx_shows() -> None:
    before_start = NOW - 7200
    _, before = service_life(("no_key", "health"), {"/ingest/market-data/": 40})
    _, after = service_life(("db_down", "ready", "metrics", "health"))
    assert dws.client_requests(before)["counts"] == {"2xx": 40, "4xx": 1, "5xx": 0, "other": 0}
    # The unit restarted 90 s ago; dw-status (and its /ready probe) asked the new process.
    answers = server({"prod": pin_start(before, before_start), "dev": pin_start(after, NOW - 90), "test": ""})
    answers["units"]["dw-api-dev.service"]["ActiveEnterTimestamp"] = at(91)
    src = Recorded(answers)
    report = dws.collect(copy.deepcopy(CONFIG), src)
    prod, dev, _test = report.sections["apis"]
    assert prod["requests"] == {"2xx": 40, "4xx": 1, "5xx": 0, "other": 0}
    assert prod["since"] == dws.iso(before_start)
    # Only the new process' counters: the first 5xx after the restart, nothing from before it.
    assert dev["requests"] == {"2xx": 0, "4xx": 0, "5xx": 1, "other": 0}
    assert dev["since"] == dws.iso(NOW - 90) and ISO.match(dev["since"])
    line = next(x for x in dws.text_lines(report) if "API dev" in x)
    assert line.endswith(f"0 2xx, 0 4xx, 1 5xx since {dws.iso(NOW - 90)}"), line
    # No Prometheus query for the API lines: only the alerts are asked there.
    assert [u for u in src.asked if u.startswith(PROMETHEUS)] == [f"{PROMETHEUS}/api/v1/alerts"]


def test_since_falls_back_to_the_unit_start_and_unreadable_metrics_are_a_problem() -> None:
    _, metrics = service_life((), {"/ingest/market-data/": 3})
    without_start = re.sub(r"^process_start_time_seconds .*\n", "", metrics, flags=re.M)
    answers = server({"prod": without_start, "dev": metrics, "test": metrics})
    answers["http"]["http://127.0.0.1:8003/metrics"] = (0, "[Errno 111] Connection refused")
    report = run_status(answers)
    prod, _dev, test = report.sections["apis"]
    assert prod["since"] == dws.iso(NOW - 2411)  # ActiveEnterTimestamp
    assert test["requests"] is None and not test["ok"]
    assert "API test: http://127.0.0.1:8003/metrics unreachable" in report.problems


def test_several_workers_are_said() -> None:
    _, metrics = service_life((), {"/ingest/market-data/": 3})
    cfg = copy.deepcopy(CONFIG)
    cfg["apis"][0]["workers"] = 2
    report = run_status(server({"prod": metrics, "dev": metrics, "test": metrics}), cfg)
    lines = [x for x in dws.text_lines(report) if " API " in x]
    assert lines[0].endswith(" (one of 2 workers)") and not lines[1].endswith("workers)")


# --- 2. WAL archiving: the last failure, and whether it came after the last success -------------------


def _archiving(last_archived_ago: float | None, last_failed_ago: float | None, failed: int) -> Any:
    answers = server()
    archived = f"{NOW - last_archived_ago:.6f}" if last_archived_ago is not None else ""
    failed_at = f"{NOW - last_failed_ago:.6f}" if last_failed_ago is not None else ""
    wal = "00000001000000000000000D" if archived else ""
    answers["psql"]["archiver"] = (
        0,
        f"{wal}|{archived}|{failed}|{'0000000100000000000000E' if failed else ''}|{failed_at}|0|0\n",
    )
    report = run_status(answers)
    line = next(x for x in dws.text_lines(report) if "WAL archiving" in x)
    return report, line


def test_an_old_archive_failure_is_shown_with_its_time_but_ok() -> None:
    report, line = _archiving(14, 1862, 6)
    archive = report.sections["archiving"]
    assert archive["last_failed_time"] == dws.iso(NOW - 1862) and not archive["failing"]
    assert line.startswith("ok   ") and f"last failure {dws.iso(NOW - 1862)}, 6 since reset" in line
    assert not any(p.startswith("WAL archiving") for p in report.problems)


def test_an_archive_failure_after_the_last_success_is_a_problem() -> None:
    report, line = _archiving(300, 20, 7)
    assert report.sections["archiving"]["failing"]
    assert line.startswith("FAIL ") and "FAILING: after the last success" in line
    assert any(
        p.startswith(f"WAL archiving fails: 0000000100000000000000E failed at {dws.iso(NOW - 20)}")
        for p in report.problems
    )
    # Failing before anything was ever archived is failing too.
    report, _ = _archiving(None, 20, 1)
    assert report.sections["archiving"]["failing"]


def test_no_archive_failure() -> None:
    report, line = _archiving(14, None, 0)
    assert report.sections["archiving"]["last_failed_time"] is None
    assert line.startswith("ok   ") and line.endswith("no failure since reset")


# --- 3. The simulator --------------------------------------------------------------------------------


def test_a_simulator_that_never_ran_says_so() -> None:
    answers = server()
    # What systemd says of a oneshot unit that never started: Result=success, no start time.
    answers["units"]["market-data-simulator.service"] = {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainStartTimestamp": "",
        "ExecMainStatus": "0",
    }
    report = run_status(answers)
    assert report.sections["simulator"]["ran"] is False
    assert report.sections["simulator"]["last_run"] is None and report.sections["simulator"]["result"] is None
    assert "ok   simulator: never ran" in dws.text_lines(report)
    # n/a is systemd's other way of saying it (the default timestamp style).
    answers["units"]["market-data-simulator.service"]["ExecMainStartTimestamp"] = "n/a"
    assert "ok   simulator: never ran" in dws.text_lines(run_status(answers))


def test_a_failed_simulator_run_is_a_problem() -> None:
    answers = server()
    answers["units"]["market-data-simulator.service"] = {
        "ActiveState": "failed",
        "Result": "exit-code",
        "ExecMainStartTimestamp": at(300),
        "ExecMainStatus": "3",
    }
    report = run_status(answers)
    assert f"FAIL simulator: last run {dws.iso(NOW - 300)}, result exit-code" in dws.text_lines(report)
    assert any(p.startswith("simulator: last run failed (exit-code, exit 3") for p in report.problems)


# --- 4. Verification ---------------------------------------------------------------------------------


def _repo_problems(report: Any, key: int) -> list[str]:
    return [p for p in report.problems if p.startswith(f"repo{key}:")]


def _with_backups_aged(answers: dict[str, Any], days: float) -> dict[str, Any]:
    """repo2 also holds a full backup that old (the oldest one it keeps)."""
    answers["pgbackrest_info"][0]["backup"].append(backup(2, "full", days * 86400, 16, int(5.4 * MIB)))
    return answers


def test_never_verified_is_ok_within_the_first_period() -> None:
    answers = _with_backups_aged(server(), 7.5)
    answers["files"].pop(VERIFY_FILES[2])
    report = run_status(answers)
    repo2 = report.sections["repositories"][1]
    assert repo2["last_verify"] is None and repo2["ok"]
    assert "ok   repo2 [ok]" in "\n".join(dws.text_lines(report)) and _repo_problems(report, 2) == []


def test_never_verified_is_a_problem_once_the_first_period_has_passed() -> None:
    answers = _with_backups_aged(server(), 8.5)
    answers["files"].pop(VERIFY_FILES[2])
    report = run_status(answers)
    assert _repo_problems(report, 2) == [
        "repo2: never verified; its oldest backup is 8.5 d old (limit 8.0 d; journalctl -u pgbackrest-verify-repo2)"
    ]
    assert any(x.startswith("FAIL repo2 [ok]:") and x.endswith("never verified") for x in dws.text_lines(report))
    # The limit is the repository's (verify period plus margin, from the pgbackrest role's schedules).
    cfg = copy.deepcopy(CONFIG)
    cfg["pgbackrest"]["repos"][1]["verify_max_age_seconds"] = 10 * 86400
    assert _repo_problems(run_status(answers, cfg), 2) == []
    # A repository without a verify schedule has no limit.
    cfg["pgbackrest"]["repos"][1]["verify_max_age_seconds"] = None
    assert _repo_problems(run_status(answers, cfg), 2) == []


def test_never_verified_counts_from_when_the_verify_was_scheduled() -> None:
    """Timers installed on a server whose repositories are older: their first period starts then."""
    answers = _with_backups_aged(server(), 30)
    answers["files"][VERIFY_FILES[2]] = dbv.render(STANZA, 2, dbv.schedule({}, VERIFY_LIMIT, NOW - 2 * 86400))
    report = run_status(answers)
    assert report.sections["repositories"][1]["last_verify"] is None and _repo_problems(report, 2) == []
    answers["files"][VERIFY_FILES[2]] = dbv.render(STANZA, 2, dbv.schedule({}, VERIFY_LIMIT, NOW - 9 * 86400))
    assert _repo_problems(run_status(answers), 2) == [
        "repo2: never verified; its oldest backup is 30.0 d old; scheduled 9.0 d ago"
        " (limit 8.0 d; journalctl -u pgbackrest-verify-repo2)"
    ]


def test_no_success_within_the_limit_is_a_problem() -> None:
    answers = _with_backups_aged(server(), 20)
    answers["files"][VERIFY_FILES[2]] = verify_metrics(2, 8.5 * 86400, 6)
    report = run_status(answers)
    assert report.sections["repositories"][1]["last_verify"] == {
        "ok": True,
        "time": dws.iso(NOW - 8.5 * 86400),
        "age_seconds": 8.5 * 86400,
        "duration_seconds": 6,
        "last_success": dws.iso(NOW - 8.5 * 86400),
        "last_success_age_seconds": 8.5 * 86400,
    }
    assert _repo_problems(report, 2) == [
        "repo2: last verified 8.5 d ago (limit 8.0 d; journalctl -u pgbackrest-verify-repo2)"
    ]
    assert _repo_problems(report, 3) == []  # verified 38 s ago


def test_a_failed_verify_is_a_problem_and_the_last_success_is_shown() -> None:
    answers = server()
    answers["files"][VERIFY_FILES[2]] = verify_metrics(2, 3600, 7, ok=False, success_ago=2 * 86400)
    answers["units"]["pgbackrest-verify-repo2.service"] = {"ActiveState": "failed", "ExecMainExitTimestamp": at(3600)}
    report = run_status(answers)
    failed_at = dws.iso(NOW - 3600)
    assert _repo_problems(report, 2) == [
        f"repo2: pgbackrest-verify-repo2.service failed at {failed_at} (journalctl -u pgbackrest-verify-repo2.service)",
        f"repo2: the verify at {failed_at} found damage or could not run (journalctl -u pgbackrest-verify-repo2)",
    ]
    line = next(x for x in dws.text_lines(report) if " repo2 " in x)
    assert line.startswith("FAIL ") and line.endswith(
        f"; verify FAILED 1.0 h ago ({failed_at}, took 7 s), last success 2.0 d ago"
    ), line
    # Never a success: said so; the limit counts as for a repository never verified.
    answers["files"][VERIFY_FILES[2]] = verify_metrics(2, 3600, 7, ok=False)
    report = run_status(_with_backups_aged(answers, 40))
    line = next(x for x in dws.text_lines(report) if " repo2 " in x)
    assert line.endswith("last success never"), line
    assert _repo_problems(report, 2)[-1].startswith(
        "repo2: never verified successfully; its oldest backup is 40.0 d old; scheduled 30.0 d ago"
    )


def test_the_role_renders_each_repositorys_verify_limit_and_units() -> None:
    import yaml

    variables = yaml.safe_load((REPO_ROOT / "roles" / "dw_status" / "vars" / "main.yml").read_text())
    # The same numbers as the pgbackrest role's timers and the alert's limit: its variables, not a copy.
    assert variables["_dw_status_verify_max_age"] == "{{ _pgbackrest_verify_max_age | default({}) }}"
    assert variables["_dw_status_verify_schedules"] == "{{ _pgbackrest_verify_schedules | default([]) }}"
    assert variables["_dw_status_verify_metrics_files"] == "{{ _pgbackrest_verify_metrics_files | default({}) }}"
    # The units' names are the pgbackrest role's filter's, never spelled out here.
    for key in ("verify_metrics_file", "verify_max_age_seconds", "'verify' | pgbackrest_unit(key)"):
        assert key in variables["_dw_status_repos"], key
    assert "'verify' | pgbackrest_unit(verify.repo)" in variables["_dw_status_timers"]
    defaults = yaml.safe_load((REPO_ROOT / "roles" / "pgbackrest" / "defaults" / "main.yml").read_text())
    assert [v["period_days"] for v in defaults["pgbackrest_verify_schedules"]] == [7, 7, 7]
    assert defaults["pgbackrest_verify_margin_hours"] * 3600 + 7 * 86400 == VERIFY_LIMIT


# --- 5. Disks: one line per filesystem ---------------------------------------------------------------


def test_one_line_per_filesystem() -> None:
    answers = server()
    answers["filesystems"][REPO2] = (2065, 500 * GIB, 40 * GIB)  # a mounted disk of its own, 92 % full
    report = run_status(answers)
    lines = [x for x in dws.text_lines(report) if " disk " in x]
    assert lines == [
        f"ok   disk {DATA}, {REPO1}: 13.1 % used, 68.5 GiB free",
        f"FAIL disk {REPO2}: 92.0 % used, 40.0 GiB free",
    ]
    assert [d["paths"] for d in report.sections["disks"]] == [[DATA, REPO1], [REPO2]]
    assert f"disk: {REPO2} 92 % full (limit 85 %)" in report.problems
    # A configured path that does not exist here is left out.
    answers["filesystems"].pop(REPO1)
    assert [d["paths"] for d in run_status(answers).sections["disks"]] == [[DATA], [REPO2]]


# --- 6. --json: ISO 8601 times -----------------------------------------------------------------------


def test_json_times_are_iso_8601_utc() -> None:
    answers = server()
    # systemctl's default style too (a systemd without --timestamp=unix), in UTC.
    answers["units"]["pgbackrest-daily.timer"]["NextElapseUSecRealtime"] = "Sat 2026-11-28 02:32:56 UTC"
    report = run_status(answers)
    out = json.loads(json.dumps(dws.as_json(report)))
    s = out["sections"]
    assert s["timers"][0]["next"] == "2026-11-28T02:32:56Z"
    assert all(ISO.match(t["next"]) and ISO.match(t["last"]) for t in s["timers"])
    assert s["simulator"]["last_run"] == dws.iso(NOW - 38) == "2026-11-27T22:30:24Z"
    assert s["repositories"][0]["failed_units"] == [
        {"unit": "pgbackrest-daily.service", "failed_at": "2026-11-27T22:30:24Z"}
    ]
    assert ISO.match(s["apis"][0]["since"]) and ISO.match(s["archiving"]["last_failed_time"])
    assert ISO.match(s["repositories"][0]["backups"]["full"]["end"])
    assert "pgbackrest-daily.service failed at 2026-11-27T22:30:24Z" in " ".join(out["problems"])
    # Nothing in the JSON looks like systemd's locale text.
    assert not re.search(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{4}-", json.dumps(out))


def test_main_prints_json_and_exits_1_on_a_problem(tmp_path, monkeypatch, capsys) -> None:
    config = tmp_path / "dw-status.json"
    config.write_text(json.dumps(CONFIG))
    answers = server()
    monkeypatch.setattr(dws, "Sources", lambda: Recorded(answers))
    assert dws.main(["--json", "--config", str(config)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and len(out["problems"]) == 3
    assert set(out["sections"]) == {
        "apis",
        "postgresql",
        "archiving",
        "repositories",
        "timers",
        "simulator",
        "disks",
        "certificates",
        "alerts",
    }


# --- 7. Alerts: the query's outcome ------------------------------------------------------------------


def _alerts(code: int, alerts: list[dict[str, Any]] | None = None, cfg: dict[str, Any] | None = None) -> Any:
    answers = server()
    body = json.dumps({"status": "success", "data": {"alerts": alerts or []}}) if code == 200 else ""
    answers["http"][f"{PROMETHEUS}/api/v1/alerts"] = (code, body)
    report = run_status(answers, cfg)
    return report, [x for x in dws.text_lines(report) if "alert" in x and not x.startswith("  - ")]


def test_alerts_none_firing_is_said() -> None:
    report, lines = _alerts(200, [alert("DwApiDown", "pending", "dw-api-dev is down")])
    assert lines == ["ok   alerts: Prometheus asked, none firing"]
    assert report.sections["alerts"] == {"prometheus": PROMETHEUS, "asked": True, "error": None, "firing": []}
    assert not any("alert" in p for p in report.problems)


def test_alerts_firing_are_counted_and_listed() -> None:
    report, lines = _alerts(200, [alert("A", "firing", "a fires"), alert("B", "firing", "b fires")])
    assert lines == [
        "FAIL alerts: Prometheus asked, 2 firing",
        "FAIL alert A firing: a fires",
        "FAIL alert B firing: b fires",
    ]
    assert "alert A firing: a fires" in report.problems and "alert B firing: b fires" in report.problems


def test_prometheus_not_asked_is_a_problem() -> None:
    report, lines = _alerts(0)
    assert report.sections["alerts"]["asked"] is False
    assert lines == [f"FAIL alerts: Prometheus at {PROMETHEUS} does not answer (unreachable)"]
    assert (
        f"alerts: Prometheus at {PROMETHEUS} does not answer (unreachable): the alerts are unknown" in report.problems
    )
    report, _ = _alerts(503)
    assert any(p.startswith("alerts: Prometheus at") and "HTTP 503" in p for p in report.problems)
    # Wrong credentials (here: none, the credentials file missing).
    report, lines = _alerts(200, [], {**CONFIG, "prometheus_credentials": "/nonexistent.json"})
    assert lines == [f"FAIL alerts: Prometheus at {PROMETHEUS} refuses the credentials of /nonexistent.json"]


# --- 8. Certificates: the nearest expiry, judged with the alert's days -------------------------------


def _certificates(metrics: str | None, cfg: dict[str, Any] | None = None) -> tuple[Any, list[str], list[str]]:
    answers = server()
    answers["files"][CERT_FILE] = metrics
    report = run_status(answers, cfg)
    lines = [x for x in dws.text_lines(report) if " certificates: " in x and not x.startswith("  - ")]
    return report, lines, [p for p in report.problems if p.startswith("certificate")]


def test_the_nearest_expiry_is_shown() -> None:
    report, lines, problems = _certificates(certificate_metrics(SAMPLE_CERTS))
    assert lines == [f"ok   certificates: nearest {EDGE_CERT} ends 2027-12-21T17:43:02Z, 388.8 days left (2 files)"]
    assert problems == []
    section = report.sections["certificates"]
    assert section["nearest"] == {
        "path": EDGE_CERT,
        "subject": "CN=dw-molecule-bookworm",
        "owner": "ingest_edge",
        "not_after": "2027-12-21T17:43:02Z",
        "days_left": 388.8,
        "soon": False,
    }
    assert [c["path"] for c in section["certificates"]] == [EDGE_CERT, CA_CERT]
    assert section["ok"] is True and section["written"] == "2026-11-27T22:06:02Z"


def test_a_certificate_within_the_alerts_days_is_a_problem() -> None:
    postgres = "/etc/postgresql/15/main/tls/server.crt"
    certs = [*SAMPLE_CERTS, (postgres, "CN=db1", "postgresql", 20.5), ("/etc/etcd/tls/member.crt", "", "etcd", 21.5)]
    _, lines, problems = _certificates(certificate_metrics(certs))
    assert lines == [f"FAIL certificates: nearest {postgres} ends 2026-12-18T10:31:02Z, 20.5 days left (4 files)"]
    # 21.5 days is outside the limit; only the one within it is a problem.
    assert problems == [
        f"certificate {postgres} ends 2026-12-18T10:31:02Z, 20.5 days left (limit 21 d; listed by postgresql;"
        " docs/monitoring.md#dwcertificateexpiressoon)"
    ]
    # The limit is the config's (the alert's monitoring_certificate_expiry_days), and a past end says so.
    certs = [*SAMPLE_CERTS, (postgres, "CN=db1", "postgresql", -1.5)]
    cfg = {**CONFIG, "certificates": {"metrics_file": CERT_FILE, "expiry_days": 7}}
    _, _, problems = _certificates(certificate_metrics(certs), cfg)
    assert problems == [
        f"certificate {postgres} ended 2026-11-26T10:31:02Z, -1.5 days left (limit 7 d; listed by postgresql;"
        " docs/monitoring.md#dwcertificateexpiressoon)"
    ]


def test_an_unreadable_certificate_is_a_problem() -> None:
    report, lines, problems = _certificates(certificate_metrics(SAMPLE_CERTS, ((EDGE_CERT + ".new", "ingest_edge"),)))
    assert lines == [
        f"FAIL certificates: nearest {EDGE_CERT} ends 2027-12-21T17:43:02Z, 388.8 days left (3 files, 1 unreadable)"
    ]
    assert problems == [
        f"certificate {EDGE_CERT}.new (listed by ingest_edge) is missing or unreadable:"
        " journalctl -t dw-certificate-metrics"
    ]
    assert report.sections["certificates"]["unreadable"] == [{"path": EDGE_CERT + ".new", "owner": "ingest_edge"}]


def test_no_certificate_metrics_is_a_problem() -> None:
    _, lines, problems = _certificates(None)
    assert lines == ["FAIL certificates: none listed (0 files)"]
    assert problems == [
        f"certificates: no {CERT_FILE}: their expiry is unknown"
        " (systemctl status dw-certificate-metrics.timer dw-certificate-metrics.service)"
    ]


def test_the_collectors_own_output_is_read(tmp_path) -> None:
    """The file dw-certificate-metrics really writes (a real certificate), read by dw-status."""
    cert = tmp_path / "server.crt"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
            *("-keyout", str(tmp_path / "server.key"), "-out", str(cert), "-days", "10", "-subj", '/O=a "b" c/CN=db1'),
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "postgresql.list").write_text(f"{cert}\n")
    output = tmp_path / "dw_certificates.prom"
    collector = REPO_ROOT / "roles" / "node_exporter" / "files" / "dw-certificate-metrics"
    subprocess.run(
        [sys.executable, str(collector), f"--lists={tmp_path / 'lists'}", f"--output={output}"], check=True, timeout=60
    )
    report = dws.collect({"certificates": {"metrics_file": str(output), "expiry_days": 21}, "disk_paths": []})
    nearest = report.sections["certificates"]["nearest"]
    assert (nearest["path"], nearest["subject"], nearest["owner"]) == (str(cert), r"CN=db1,O=a \"b\" c", "postgresql")
    assert 9.9 <= nearest["days_left"] <= 10
    assert report.problems == [
        f"certificate {cert} ends {nearest['not_after']}, {nearest['days_left']} days left (limit 21 d; listed by"
        " postgresql; docs/monitoring.md#dwcertificateexpiressoon)"
    ]


def test_the_role_renders_the_certificate_settings() -> None:
    import yaml

    role = REPO_ROOT / "roles" / "dw_status"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    variables = yaml.safe_load((role / "vars" / "main.yml").read_text())
    # The alert's days, the collector's file: each from the role that owns it.
    assert defaults["dw_status_certificate_expiry_days"] == (
        "{{ monitoring_certificate_expiry_days"
        " | default('monitoring' | dw_role_default('monitoring_certificate_expiry_days')) }}"
    )
    monitoring = yaml.safe_load((REPO_ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    assert monitoring["monitoring_certificate_expiry_days"] == 21
    assert "node_exporter_textfile_dir" in defaults["dw_status_certificate_metrics_file"]
    assert "dw_certificates.prom" in defaults["dw_status_certificate_metrics_file"]
    assert "dw_status_certificate_expiry_days | int" in variables["_dw_status_config"]["certificates"]


# --- 8. A Patroni cluster: its members as Prometheus scrapes them --------------------------------------

MEMBERS = ["ha-db1", "ha-db2", "ha-db3"]
PATRONI_CONFIG = {
    **CONFIG,
    "patroni": {"scope": "dw-main", "members": MEMBERS, "synchronous_mode": True, "max_lag_bytes": 16 * MIB},
}
PATRONI_URL = f"{PROMETHEUS}/api/v1/query?{urllib.parse.urlencode({'query': dws.PATRONI_QUERY})}"


def member_samples(host: str, up: int = 1, **values: float) -> list[dict[str, Any]]:
    """What Prometheus answers for one member: up, then its patroni_* gauges (none while it is down)."""
    address = f"10.89.44.1{MEMBERS.index(host) + 1}:8008" if host in MEMBERS else "10.89.44.99:8008"
    labels = {"host": host, "instance": address, "job": "patroni"}
    samples = [{"metric": {"__name__": "up", **labels}, "value": [NOW, str(up)]}]
    if up:
        samples += [
            {"metric": {"__name__": f"patroni_{name}", "scope": "dw-main", **labels}, "value": [NOW, str(value)]}
            for name, value in values.items()
        ]
    return samples


def leader_samples(host: str, location: float, timeline: int = 4) -> list[dict[str, Any]]:
    return member_samples(
        host, primary=1, sync_standby=0, replica=0, postgres_running=1, postgres_timeline=timeline,
        xlog_location=location, xlog_received_location=0, xlog_replayed_location=0,
    )  # fmt: skip


def replica_samples(host: str, received: float, sync: bool = False, timeline: int = 4, running: int = 1) -> list:
    return member_samples(
        host, primary=0, sync_standby=int(sync), replica=1, postgres_running=running,
        postgres_timeline=timeline if running else 0, xlog_location=0,
        xlog_received_location=received, xlog_replayed_location=received - 4096,
    )  # fmt: skip


def _patroni(results: list[dict[str, Any]] | None, code: int = 200) -> tuple[Any, list[str]]:
    answers = server()
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": results}}) if code == 200 else ""
    if code:
        answers["http"][PATRONI_URL] = (code, body)
    report = run_status(answers, PATRONI_CONFIG)
    lines = dws.text_lines(report)
    return report, [x for x in lines if ("Patroni" in x or "member " in x) and not x.startswith("  - ")]


def _patroni_problems(report: Any) -> list[str]:
    return [p for p in report.problems if "Patroni" in p]


def test_a_healthy_cluster_lists_each_members_role_state_timeline_and_lag() -> None:
    report, lines = _patroni(
        leader_samples("ha-db1", 100 * MIB)
        + replica_samples("ha-db2", 100 * MIB, sync=True)
        + replica_samples("ha-db3", 100 * MIB - 1536 * 1024)
    )
    assert lines == [
        "ok   Patroni dw-main: leader ha-db1, 3/3 members running, timeline 4",
        "     member ha-db1: leader, running, timeline 4",
        "     member ha-db2: sync standby, running, timeline 4, lag 0 B",
        "     member ha-db3: replica, running, timeline 4, lag 1.5 MiB",
    ]
    assert not _patroni_problems(report)
    assert report.sections["patroni"]["leader"] == "ha-db1"
    assert [m["lag_bytes"] for m in report.sections["patroni"]["members"]] == [None, 0, 1536 * 1024]


def test_a_stopped_member_a_lagging_replica_and_no_sync_standby_are_problems() -> None:
    report, lines = _patroni(
        leader_samples("ha-db1", 100 * MIB) + member_samples("ha-db2", up=0) + replica_samples("ha-db3", 60 * MIB)
    )
    assert lines == [
        "FAIL Patroni dw-main: leader ha-db1, 2/3 members running, timeline 4",
        "     member ha-db1: leader, running, timeline 4",
        "FAIL member ha-db2: -, unreachable",
        "FAIL member ha-db3: replica, running, timeline 4, lag 40.0 MiB",
    ]
    assert _patroni_problems(report) == [
        "Patroni member ha-db2: unreachable",
        "Patroni member ha-db3: 40.0 MiB behind the leader",
        "Patroni dw-main: synchronous mode on, but no member is the synchronous standby",
    ]


def test_postgresql_stopped_under_patroni_and_an_old_timeline_are_problems() -> None:
    report, lines = _patroni(
        leader_samples("ha-db2", 10 * MIB, timeline=5)
        + replica_samples("ha-db1", 10 * MIB, sync=True, timeline=4)
        + replica_samples("ha-db3", 0, running=0)
    )
    assert lines == [
        "FAIL Patroni dw-main: leader ha-db2, 2/3 members running, timeline 5",
        "FAIL member ha-db1: sync standby, running, timeline 4, lag 0 B",
        "     member ha-db2: leader, running, timeline 5",
        "FAIL member ha-db3: replica, stopped",
    ]
    assert _patroni_problems(report) == [
        "Patroni member ha-db1: on timeline 4, the leader on 5",
        "Patroni member ha-db3: stopped",
    ]


def test_no_leader_and_a_member_prometheus_does_not_scrape_are_problems() -> None:
    report, lines = _patroni(replica_samples("ha-db1", 5 * MIB) + replica_samples("ha-db2", 5 * MIB))
    assert lines == [
        "FAIL Patroni dw-main: NO leader, 2/3 members running",
        "     member ha-db1: replica, running, timeline 4",
        "     member ha-db2: replica, running, timeline 4",
        "FAIL member ha-db3: -, not scraped",
    ]
    assert _patroni_problems(report) == [
        "Patroni member ha-db3: not scraped",
        "Patroni dw-main: no member is the leader",
    ]


def test_prometheus_not_answering_the_members_query_is_a_problem() -> None:
    report, lines = _patroni(None, code=0)
    assert lines == [
        f"FAIL Patroni dw-main: Prometheus at {PROMETHEUS} does not answer the members' metrics"
        " ([Errno 111] Connection refused)"
    ]
    assert _patroni_problems(report) == [
        f"Patroni dw-main: Prometheus at {PROMETHEUS} does not answer the members' metrics"
        " ([Errno 111] Connection refused): the cluster's state is unknown"
    ]


def test_no_patroni_section_without_a_cluster() -> None:
    report = run_status(server())
    assert "patroni" not in report.sections
    assert not any("Patroni" in line for line in dws.text_lines(report))


def test_the_role_renders_the_patroni_settings() -> None:
    import yaml

    role = REPO_ROOT / "roles" / "dw_status"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    variables = yaml.safe_load((role / "vars" / "main.yml").read_text())
    # The alert's threshold and the patroni role's settings, each from the role that owns it.
    assert defaults["dw_status_patroni_max_lag_bytes"] == (
        "{{ monitoring_patroni_max_lag_bytes"
        " | default('monitoring' | dw_role_default('monitoring_patroni_max_lag_bytes')) }}"
    )
    monitoring = yaml.safe_load((REPO_ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    assert monitoring["monitoring_patroni_max_lag_bytes"] == 16777216
    assert "patroni_scope" in defaults["dw_status_patroni_scope"]
    assert "patroni_synchronous_mode" in defaults["dw_status_patroni_synchronous_mode"]
    # Only where Prometheus is asked (the monitoring host) and the inventory has a cluster.
    rendered = variables["_dw_status_config"]["patroni"]
    assert "dw_status_prometheus_url | trim and dw_status_patroni_members | length > 0" in rendered


# --- 9. The sample in docs/daily-operation.md --------------------------------------------------------


def test_the_sample_server() -> None:
    report = run_status(server())
    assert report.problems == [
        f"repo1: {REPO1}/backup/{STANZA} is not writable by postgres",
        "repo1: pgbackrest-daily.service failed at 2026-11-27T22:30:24Z (journalctl -u pgbackrest-daily.service)",
        "alert DwBackupUnitFailed firing: pgbackrest-daily.service failed on dw-molecule-bookworm",
    ]


def test_the_docs_sample_is_this_output() -> None:
    text = DOCS.read_text()
    assert BEGIN in text and END in text, f"{DOCS} has no sample markers"
    found = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert found == sample_block(), "the sample is out of date: python tests/test_dw_status.py --write-sample"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-sample"]:
        write_sample()
        print(f"wrote the dw-status sample into {DOCS.relative_to(REPO_ROOT)}")
    else:
        sys.exit("usage: python tests/test_dw_status.py --write-sample")


# --- 5. The restore drill ----------------------------------------------------------------------------

# The drill metrics are written by the script the drill timers run (its own render).
drl = load_source(REPO_ROOT / "roles" / "pgbackrest" / "files" / "dw-restore-drill", "dw_restore_drill_script")
DRILL_FILES = {r: f"/var/lib/prometheus/node-exporter/dw_pgbackrest_drill_repo{r}.prom" for r in (1, 2, 3)}
DRILL_LIMIT = 33 * 86400  # the default period (31 d) plus margin (48 h)


def _drill_config() -> dict[str, Any]:
    """CONFIG with the role's drill schedules: each repository's drill metrics file and limit."""
    cfg = copy.deepcopy(CONFIG)
    for repo in cfg["pgbackrest"]["repos"]:
        repo["units"].append(f"pgbackrest-drill-repo{repo['key']}.service")
        repo["drill_metrics_file"] = DRILL_FILES[repo["key"]]
        repo["drill_max_age_seconds"] = DRILL_LIMIT
    return cfg


def drill_metrics(repo: int, ran_ago: float, ok: bool = True, success_ago: float | None = None) -> str:
    """A repository's drill metrics file as dw-restore-drill leaves it: a drill of 95 s that ended
    ran_ago and restored 40 MiB; after a failure, the success it keeps. Scheduled for 60 days."""
    values = drl.schedule({}, DRILL_LIMIT, NOW - 60 * 86400)
    if success_ago is not None:
        values["last_success_timestamp_seconds"] = int(NOW - success_ago)
    finished = NOW - ran_ago
    result = {"ok": ok, "size": 40 * MIB if ok else 0, "backup_stop": int(finished - 3600)}
    return drl.render(STANZA, repo, drl.outcome(values, result, finished - 95, finished), {"cosc471_prod": 120.0})


def test_each_repositorys_last_drill_is_shown_with_what_it_restored() -> None:
    answers = server()
    for repo in (1, 2, 3):
        answers["files"][DRILL_FILES[repo]] = drill_metrics(repo, 86400)
    report = run_status(answers, _drill_config())
    repo2 = report.sections["repositories"][1]
    assert repo2["last_drill"] == {
        "ok": True,
        "time": dws.iso(NOW - 86400),
        "age_seconds": 86400,
        "duration_seconds": 95,
        "last_success": dws.iso(NOW - 86400),
        "last_success_age_seconds": 86400,
        "restored_size_bytes": 40 * MIB,
    }
    assert not any(p for p in report.problems if "drill" in p), report.problems
    line = next(x for x in dws.text_lines(report) if x.startswith("ok   repo2 "))
    assert line.endswith(f"; drill ok 1.0 d ago ({dws.iso(NOW - 86400)}, took 1.6 min, 40.0 MiB restored)"), line


def test_a_failed_drill_is_a_problem_and_the_last_success_is_shown() -> None:
    answers = server()
    answers["files"][DRILL_FILES[2]] = drill_metrics(2, 3600, ok=False, success_ago=20 * 86400)
    report = run_status(answers, _drill_config())
    assert _repo_problems(report, 2) == [
        f"repo2: the restore drill at {dws.iso(NOW - 3600)} failed or could not run"
        " (journalctl -u pgbackrest-drill-repo2)"
    ]
    line = next(x for x in dws.text_lines(report) if x.startswith("FAIL repo2 "))
    assert "; drill FAILED 1.0 h ago" in line and line.endswith(", last success 20.0 d ago"), line


def test_never_drilled_is_a_problem_only_once_the_first_period_has_passed() -> None:
    answers = _with_backups_aged(server(), 30)
    report = run_status(answers, _drill_config())
    assert report.sections["repositories"][1]["last_drill"] is None and _repo_problems(report, 2) == []
    assert any(x.startswith("ok   repo2 ") and x.endswith("; never drilled") for x in dws.text_lines(report))
    answers = _with_backups_aged(server(), 34)
    assert _repo_problems(run_status(answers, _drill_config()), 2) == [
        "repo2: never drilled; its oldest backup is 34.0 d old (limit 33.0 d; journalctl -u pgbackrest-drill-repo2)"
    ]
    # Without a drill schedule, nothing about drills is shown.
    report = run_status(answers)
    assert "last_drill" not in report.sections["repositories"][1]
    assert not any("drill" in x for x in dws.text_lines(report))

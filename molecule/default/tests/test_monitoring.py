"""Monitoring, end to end: Prometheus, Alertmanager and the exporters refuse local users without
the credentials (basic auth), Prometheus scrapes every target with them, the exporters' login reads
nothing of the market data, backup facts reach Prometheus, and a broken repository goes from a failed backup
unit to a firing alert at a webhook and back to resolved; dw-status says the same.

The scenario's group monitoring_test (group_vars/monitoring_test.yml) shortens the intervals and
points Alertmanager at the webhook receiver this module starts inside the instance.
"""

from __future__ import annotations

import calendar
import functools
import json
import re
import shlex
import time
import urllib.parse

import pytest
from conftest import STANZA, refresh_backup_metrics, role_default, run_playbook, wait_for
from support import inventory_environments, read_vault, unwritable

PROMETHEUS = f"http://127.0.0.1:{role_default('monitoring', 'monitoring_prometheus_port')}"
ALERTMANAGER = f"http://127.0.0.1:{role_default('monitoring', 'monitoring_alertmanager_port')}"
# Each listener the monitoring roles install: a URL it serves, and the role whose credentials it takes.
LISTENERS = {
    "prometheus": (f"{PROMETHEUS}/api/v1/targets", "monitoring"),
    "alertmanager": (f"{ALERTMANAGER}/api/v2/status", "monitoring"),
    "node_exporter": (
        f"http://127.0.0.1:{role_default('node_exporter', 'node_exporter_port')}/metrics",
        "node_exporter",
    ),
    "postgres_exporter": (
        f"http://127.0.0.1:{role_default('postgres_exporter', 'postgres_exporter_port')}/metrics",
        "postgres_exporter",
    ),
}
# Local users that must not read metrics or touch silences: nginx's and dev's API's (where a bad
# release runs first).
OTHER_USERS = ("www-data", next(e["unit"] for e in inventory_environments() if e["name"] == "dev"))
WEBHOOK_PORT = 9199
WEBHOOK_LOG = "/run/dw-test-webhook.jsonl"
REPO1 = role_default("pgbackrest", "pgbackrest_repo1_path")
REPO2 = role_default("pgbackrest", "pgbackrest_repo2_path")
BACKUP_UNIT = "pgbackrest-daily.service"

# A receiver for Alertmanager's webhook: each POST body becomes one line of WEBHOOK_LOG, with the
# time it arrived.
RECEIVER = f"""
import http.server, json, time
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open({WEBHOOK_LOG!r}, "a") as log:
            log.write(json.dumps({{"received": time.time(), "body": body}}) + "\\n")
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", {WEBHOOK_PORT}), Handler).serve_forever()
"""


@functools.cache
def credentials(role: str) -> tuple[str, str]:
    """A role's web user and its password from the local vault (one monitoring password for all)."""
    return role_default(role, f"{role}_web_username"), read_vault()["vault_monitoring_web_password"]


def curl_auth(role: str = "monitoring") -> str:
    user, password = credentials(role)
    return f"-u {shlex.quote(f'{user}:{password}')}"


def get_json(host, url: str) -> dict:
    return json.loads(host.check_output(f"curl -sf {curl_auth()} {shlex.quote(url)}"))


def http_code(host, url: str, *, user: str = "root", auth: str = "", method: str = "GET", body: str = "") -> str:
    data = f"-H 'Content-Type: application/json' --data {shlex.quote(body)}" if body else ""
    return host.check_output(
        f"runuser -u {user} -- curl -s -o /dev/null -w '%{{http_code}}' -X {method} {auth} {data} {shlex.quote(url)}"
    )


def query(host, promql: str) -> list[dict]:
    return get_json(host, f"{PROMETHEUS}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")["data"]["result"]


def test_services_listen_on_loopback_only(host):
    listening = host.check_output("ss -ltnH")
    for port in (9090, 9093, 9100, 9187):
        addresses = re.findall(rf"\s(\S+):{port}\s", listening)
        assert addresses == ["127.0.0.1"], (port, addresses)
    assert ":9094 " not in listening, "Alertmanager's cluster port must stay closed"


@pytest.mark.parametrize("user", OTHER_USERS)
def test_listeners_refuse_local_users_without_credentials(host, user):
    for name, (url, role) in LISTENERS.items():
        assert http_code(host, url, user=user) == "401", (name, user)
        wrong = f"-u {shlex.quote(credentials(role)[0] + ':not-the-password')}"
        assert http_code(host, url, user=user, auth=wrong) == "401", (name, user, "wrong password")
        # The same request with the credentials passes: the refusal is the authentication's.
        assert http_code(host, url, user=user, auth=curl_auth(role)) == "200", (name, user, "with credentials")


@pytest.mark.parametrize("user", OTHER_USERS)
def test_a_silence_needs_the_credentials(host, user):
    now = time.time()
    silence = json.dumps(
        {
            "matchers": [{"name": "alertname", "value": "DwTestSilence", "isRegex": False}],
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 600)),
            "createdBy": user,
            "comment": "muting alerts",
        }
    )
    url = f"{ALERTMANAGER}/api/v2/silences"

    def silences() -> dict[str, str]:
        return {s["id"]: s["status"]["state"] for s in get_json(host, url) if s["comment"] == "muting alerts"}

    before = silences()
    assert http_code(host, url, user=user, method="POST", body=silence) == "401"
    assert silences() == before, "a silence was created without credentials"
    # The same silence with the credentials is created (so the refusal above is not a bad body);
    # then expired again.
    created = json.loads(
        host.check_output(
            f"curl -sf {curl_auth()} -H 'Content-Type: application/json' --data {shlex.quote(silence)} {url}"
        )
    )["silenceID"]
    host.check_output(f"curl -sf {curl_auth()} -X DELETE {ALERTMANAGER}/api/v2/silence/{created}")
    assert silences()[created] == "expired"


def test_credentials_are_readable_by_root_and_prometheus_only(host):
    files = [
        "/etc/prometheus/credentials/monitoring.password",
        "/etc/prometheus/credentials/node.password",
        "/etc/prometheus/credentials/postgres.password",
        "/etc/prometheus/web.yml",
        "/etc/prometheus/alertmanager-web.yml",
        role_default("node_exporter", "node_exporter_web_config"),
        role_default("postgres_exporter", "postgres_exporter_web_config"),
    ]
    for path in files:
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "prometheus", 0o640), path
        for user in OTHER_USERS:
            assert host.run(f"runuser -u {user} -- cat {path}").rc != 0, (path, user)
    # The web configurations hold a bcrypt hash, never the password.
    password = credentials("monitoring")[1]
    for path in files[3:]:
        content = host.file(path).content_string
        assert "$2b$" in content and password not in content, path
    dw_status = host.file("/etc/dw-status-credentials.json")
    assert (dw_status.user, dw_status.group, dw_status.mode) == ("root", "root", 0o600)


def test_every_target_is_scraped_and_healthy(host, environments):
    def targets():
        active = get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    active = wait_for(targets, 60, "every target up")
    jobs = sorted(t["labels"]["job"] for t in active)
    assert jobs == sorted(["alertmanager", "node", "postgres", "prometheus"] + ["dw-api"] * len(environments))
    assert {t["labels"]["environment"] for t in active if t["labels"]["job"] == "dw-api"} == {
        e.name for e in environments
    }
    # The postgres exporter is logged in (pg_up), and archiving's backlog query answers.
    assert [r["value"][1] for r in query(host, "pg_up")] == ["1"]
    assert query(host, "dw_archive_ready_segments"), "the exporter's extra query returned nothing"


def test_exporter_login_reads_no_market_data(host, psql, environments):
    login = role_default("postgresql", "postgresql_monitoring_login")
    assert psql.value(f"SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = '{login}'") == "f"
    assert psql.value(f"SELECT pg_has_role('{login}', 'pg_monitor', 'member')") == "t"
    assert psql.value(f"SELECT pg_has_role('{login}', 'pg_read_all_data', 'member')") == "f"
    for env in environments:
        assert (
            psql.value(f"SELECT has_database_privilege('{login}', current_database(), 'CONNECT')", db=env.database)
            == "f"
        )
        assert (
            psql.value(f"SELECT has_table_privilege('{login}', 'staging.market_data', 'SELECT')", db=env.database)
            == "f"
        )
        # And for real: its own peer login is refused on the environment's database...
        refused = host.run(f"runuser -u {login} -- psql -X -A -t -d {env.database} -c 'TABLE staging.market_data'")
        assert refused.rc != 0 and "no pg_hba.conf entry" in refused.stderr, refused.stderr
    # ...and works on postgres, where it reads statistics.
    assert (
        int(
            host.check_output(
                f"runuser -u {login} -- psql -X -A -t -d postgres -c 'SELECT count(*) FROM pg_stat_activity'"
            )
        )
        >= 1
    )


def test_backup_facts_reach_prometheus(host):
    textfile = host.file(f"{role_default('node_exporter', 'node_exporter_textfile_dir')}/dw_pgbackrest.prom")
    written = refresh_backup_metrics(host)
    assert textfile.exists and textfile.mode == 0o644
    # Prometheus has scraped the file this test wrote, not an older one.
    wait_for(
        # The start time as it is: rounded to the second, it could lie after a run that takes
        # less than half a second (0.2 s here), and the wait then never ends.
        lambda: query(host, f"dw_pgbackrest_info_timestamp_seconds >= {written!r}"),
        60,
        "a scrape of the refreshed backup metrics",
    )
    ends = query(host, "max by (repo) (dw_pgbackrest_backup_last_end_timestamp_seconds)")
    repos = {r["metric"]["repo"]: float(r["value"][1]) for r in ends}
    assert {"1", "2"} <= set(repos), repos
    # Real backups of this converge: each ended in the past, and not long ago.
    assert all(0 < time.time() - end < 86400 for end in repos.values()), repos
    assert [r["value"][1] for r in query(host, 'dw_pgbackrest_info_success{host!=""}')] == ["1"]


def test_certificate_expiry_reaches_prometheus(host):
    """The CA's copy in the trust store (the dw_pki role's list) and every certificate another role
    listed here have their expiry scraped; each listed file reads, and none is near its end."""
    ca = "/usr/local/share/ca-certificates/dw-platform-ca.crt"
    assert host.file("/etc/dw-certificates.d/dw_pki.list").contains(f"^{ca}$")
    started = time.time()
    host.check_output("systemctl start dw-certificate-metrics.service")
    textfile = host.file(f"{role_default('node_exporter', 'node_exporter_textfile_dir')}/dw_certificates.prom")
    assert textfile.exists and textfile.mode == 0o644
    wait_for(
        lambda: query(host, f"dw_certificate_metrics_timestamp_seconds >= {started!r}"),
        60,
        "a scrape of the refreshed certificate metrics",
    )
    ends = {r["metric"]["path"]: r for r in query(host, "dw_certificate_not_after_seconds")}
    assert "dw_pki" in ends[ca]["metric"]["owner"].split(","), ends[ca]
    # Issued by this converge (or one before it): the CA for 10 years, the servers' for 397 days;
    # the S3 emulator's certificate, made by prepare.yml for 30 days, is listed too (repo3's CA
    # file). None is inside the alert's window, and the alert is not firing.
    window = role_default("monitoring", "monitoring_certificate_expiry_days") * 86400
    assert all(float(r["value"][1]) - time.time() > window for r in ends.values()), ends
    assert float(ends[ca]["value"][1]) - time.time() > 300 * 86400, ends[ca]
    assert query(host, 'ALERTS{alertname="DwCertificateExpiresSoon"}') == []
    assert query(host, "dw_certificate_read_ok == 0") == []


def test_a_short_lived_certificate_alerts_and_a_converge_clears_it(host):
    """The edge's certificate reissued for 5 days (inside the alert's window) fires
    DwCertificateExpiresSoon; the next plain converge of the edge renews it (5 days is inside
    dw_pki_certificate_renew_days), and the alert clears without anyone touching it."""
    cert = f"{role_default('ingest_edge', 'ingest_edge_tls_dir')}/dw-edge.crt"
    alert = f'ALERTS{{alertname="DwCertificateExpiresSoon", path="{cert}", alertstate="firing"}}'
    assert query(host, alert) == []
    # Due for renewal now (397 < 400 days), and renewed for 5: what a converge would leave after a
    # CA or an operator gave the edge a certificate about to expire.
    short = run_playbook(
        "../site.yml",
        "--tags",
        "ingest_edge",
        "-e",
        "dw_pki_certificate_validity_days=5",
        "-e",
        "dw_pki_certificate_renew_days=400",
    )
    assert short.returncode == 0, (short.stdout + short.stderr)[-3000:]
    days_left = (
        int(host.check_output(f'date -d "$(openssl x509 -noout -enddate -in {cert} | cut -d= -f2)" +%s')) - time.time()
    ) / 86400
    assert 4 < days_left <= 5, days_left
    issued_at = time.time()
    firing = wait_for(lambda: query(host, alert), 90, "DwCertificateExpiresSoon for the edge's certificate")
    print(f"5-day certificate -> DwCertificateExpiresSoon firing: {time.time() - issued_at:.1f} s")
    assert float(firing[0]["value"][1]) == 1

    # The converge an operator runs anyway renews it, and the alert clears.
    renewed = run_playbook("../site.yml", "--tags", "ingest_edge")
    assert renewed.returncode == 0, (renewed.stdout + renewed.stderr)[-3000:]
    days_left = (
        int(host.check_output(f'date -d "$(openssl x509 -noout -enddate -in {cert} | cut -d= -f2)" +%s')) - time.time()
    ) / 86400
    assert days_left > 300, days_left
    renewed_at = time.time()
    wait_for(
        lambda: not query(host, f'ALERTS{{alertname="DwCertificateExpiresSoon", path="{cert}"}}'),
        90,
        "DwCertificateExpiresSoon to clear after the converge",
    )
    print(f"converge renewed it -> alert cleared: {time.time() - renewed_at:.1f} s")
    # The edge serves the renewed certificate.
    served = host.check_output(
        f"echo | openssl s_client -connect 127.0.0.1:{_edge_port()} -servername localhost 2>/dev/null"
        " | openssl x509 -noout -enddate"
    )
    assert served == host.check_output(f"openssl x509 -noout -enddate -in {cert}"), served


def _edge_port() -> int:
    return next(e["edge_port"] for e in inventory_environments() if e["name"] == "prod")


def _unit_exit_time(host, unit: str) -> float:
    usec = host.check_output(f"systemctl show -P ExecMainExitTimestampMonotonic {unit}")
    uptime = float(host.check_output("cut -d' ' -f1 /proc/uptime"))
    return time.time() - uptime + int(usec) / 1e6


def _webhook_alerts(host, status: str) -> list[dict]:
    out = host.run(f"cat {WEBHOOK_LOG}").stdout
    found = []
    for line in out.splitlines():
        entry = json.loads(line)
        for alert in entry["body"]["alerts"]:
            if (alert["labels"]["alertname"], alert["labels"].get("name"), alert["status"]) == (
                "DwBackupUnitFailed",
                BACKUP_UNIT,
                status,
            ):
                found.append({"received": entry["received"], **alert})
    return found


def _dw_status(host):
    result = host.run("dw-status --json")
    return result.rc, json.loads(result.stdout)


@pytest.fixture
def webhook(host):
    host.run("systemctl stop dw-test-webhook.service; systemctl reset-failed dw-test-webhook.service")
    host.check_output(f"rm -f {WEBHOOK_LOG}")
    host.check_output(f"systemd-run --unit=dw-test-webhook --quiet python3 -c {shlex.quote(RECEIVER)}")
    yield
    host.run("systemctl stop dw-test-webhook.service")


def test_broken_repository_alerts_and_recovers(host, webhook):
    backup_dir = f"{REPO1}/backup/{STANZA}"
    # A healthy start (an alert from an earlier test, such as a killed API, resolves first).
    wait_for(lambda: _dw_status(host)[0] == 0, 90, "dw-status to exit 0 before the break", interval=3)
    with unwritable(host, backup_dir):
        assert host.run(f"systemctl start {BACKUP_UNIT}").rc != 0, "the backup should fail on an unwritable repository"
        failed_at = _unit_exit_time(host, BACKUP_UNIT)
        # The hook logged one line naming the unit. systemd starts the OnFailure= hook after the
        # unit has failed, so `systemctl start` may return before the line is in the journal.
        wait_for(
            lambda: (
                f"{BACKUP_UNIT} failed: result=exit-code"
                in host.check_output("journalctl -q -o cat -t dw-unit-failed --since -2min")
            ),
            30,
            "the failure hook's journal line",
        )

        def prometheus_alert():
            alerts = get_json(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "DwBackupUnitFailed" and a["labels"]["name"] == BACKUP_UNIT
            ]

        seen = wait_for(prometheus_alert, 60, "the alert in Prometheus")
        assert seen[0]["state"] in ("pending", "firing")
        assert "pgbackrest-daily.service failed" in seen[0]["annotations"]["summary"]
        delivered = wait_for(lambda: _webhook_alerts(host, "firing"), 120, "the alert at the webhook")
        print(f"failed unit -> Alertmanager webhook: {delivered[0]['received'] - failed_at:.1f} s")

        rc, status = _dw_status(host)
        assert rc == 1
        assert any(p.startswith("repo1:") and "not writable" in p for p in status["problems"]), status["problems"]
        assert any(BACKUP_UNIT in p for p in status["problems"]), status["problems"]
        # The failed unit with its exit time in ISO 8601 UTC, and the alert query's outcome with the alert.
        failed = {u["unit"]: u["failed_at"] for r in status["sections"]["repositories"] for u in r["failed_units"]}
        assert BACKUP_UNIT in failed, status["sections"]["repositories"]
        assert abs(calendar.timegm(time.strptime(failed[BACKUP_UNIT], "%Y-%m-%dT%H:%M:%SZ")) - failed_at) < 5, failed
        alerts = status["sections"]["alerts"]
        assert alerts["asked"] and any(
            a["alert"] == "DwBackupUnitFailed" and a["labels"].get("name") == BACKUP_UNIT for a in alerts["firing"]
        ), alerts
        text = host.run("dw-status")
        assert text.rc == 1 and "FAIL repo1" in text.stdout, text.stdout
        assert "FAIL alerts: Prometheus asked, " in text.stdout, text.stdout

    # The unit leaves the failed state as soon as the repaired run starts, so the alert resolves
    # from then on (measured from the start, not the end, of that run).
    repaired_at = time.time()
    assert host.run(f"systemctl start {BACKUP_UNIT}").rc == 0
    resolved = wait_for(lambda: _webhook_alerts(host, "resolved"), 120, "the resolved alert at the webhook")
    print(f"repaired run started -> resolved at the webhook: {resolved[0]['received'] - repaired_at:.1f} s")

    def dw_status_clear():
        rc, status = _dw_status(host)
        return status if rc == 0 else None

    status = wait_for(dw_status_clear, 60, "dw-status to exit 0", interval=3)
    assert status["ok"] and not status["problems"]
    assert status["sections"]["alerts"]["asked"] and status["sections"]["alerts"]["firing"] == []
    print(host.check_output("dw-status"))


def _drill_alerts(host, status: str) -> list[dict]:
    """DwRestoreDrillFailed notifications for repo2 at the webhook, in that status."""
    found = []
    for line in host.run(f"cat {WEBHOOK_LOG}").stdout.splitlines():
        entry = json.loads(line)
        for alert in entry["body"]["alerts"]:
            labels = alert["labels"]
            if (labels["alertname"], labels.get("repo"), alert["status"]) == ("DwRestoreDrillFailed", "2", status):
                found.append({"received": entry["received"], **alert})
    return found


def test_restore_drill_metrics_reach_prometheus(host):
    """test_backup.py ran repo1's drill unit: its outcome is scraped, and no drill alert fires."""
    ok = wait_for(
        lambda: query(host, f'dw_pgbackrest_drill_ok{{stanza="{STANZA}",repo="1"}} == 1'), 60, "the drill's metrics"
    )
    assert ok[0]["metric"]["host"], ok
    assert query(host, 'dw_pgbackrest_drill_restored_size_bytes{repo="1"} > 0'), "no restored size"
    assert query(host, 'dw_pgbackrest_drill_max_age_seconds{repo="2"}'), "repo2's drill schedule not recorded"
    assert query(host, 'ALERTS{alertname=~"DwRestoreDrill.*"}') == []


def test_unreadable_repository_fails_the_drill_alerts_and_recovers(host, webhook):
    """repo2 unreadable: its drill fails loudly (non-zero exit, result 0, a journal line naming why),
    DwRestoreDrillFailed reaches Alertmanager's webhook; readable again, the next drill clears it."""
    unit = "pgbackrest-drill-repo2.service"
    metrics = "/var/lib/prometheus/node-exporter/dw_pgbackrest_drill_repo2.prom"
    with unwritable(host, REPO2, "000"):
        assert host.run(f"systemctl start {unit}").rc != 0, "the drill should fail on an unreadable repository"
        journal = host.check_output(f"journalctl -u {unit} -n 20 --no-pager")
        assert "repo2 restore drill FAILED" in journal, journal
        assert f'dw_pgbackrest_drill_ok{{stanza="{STANZA}",repo="2"}} 0' in host.check_output(f"cat {metrics}")
        assert host.run("ls -A /var/lib/pgbackrest-drill").stdout.strip() == "", "the copy was not removed"
        delivered = wait_for(lambda: _drill_alerts(host, "firing"), 120, "DwRestoreDrillFailed at the webhook")
        assert "repo2" in delivered[0]["annotations"]["summary"], delivered[0]
        rc, status = _dw_status(host)
        assert rc == 1 and any(p.startswith("repo2: the restore drill at ") for p in status["problems"]), status

    assert host.run(f"systemctl start {unit}").rc == 0, host.check_output(f"journalctl -u {unit} -n 20 --no-pager")
    assert f'dw_pgbackrest_drill_ok{{stanza="{STANZA}",repo="2"}} 1' in host.check_output(f"cat {metrics}")
    wait_for(lambda: _drill_alerts(host, "resolved"), 120, "the resolved DwRestoreDrillFailed at the webhook")

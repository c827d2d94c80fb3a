"""The API units, their env files, and the simulator timer, exercised over real HTTP in the host."""

from __future__ import annotations

import calendar
import json
import shlex
import time
import uuid

from conftest import PROJECT, api_key, wait_for
from support import market_record


def _post(host, port: int, body: str, api_key: str | None):
    auth = f"-H {shlex.quote('X-API-Key: ' + api_key)} " if api_key else ""
    out = host.check_output(
        f"curl -s -o /tmp/body -w '%{{http_code}}' -X POST -H 'Content-Type: application/json' {auth}"
        f"--data-binary {shlex.quote(body)} http://127.0.0.1:{port}/ingest/market-data/; echo; cat /tmp/body"
    )
    status, _, payload = out.partition("\n")
    return int(status), payload


def test_units_enabled_and_active(host, environments):
    for env in environments:
        for unit in (f"{env.unit}.socket", f"{env.unit}.service"):
            service = host.service(unit)
            assert service.is_enabled, unit
            assert service.is_running, unit


def test_listen_on_configured_address_only(host, environments):
    listeners = host.check_output("ss -ltnH | awk '{print $4}'").split()
    for env in environments:
        on_port = [addr for addr in listeners if addr.rsplit(":", 1)[1] == str(env.api_port)]
        assert on_port == [f"127.0.0.1:{env.api_port}"], on_port


def test_ready_reports_environment_and_database(host, environments):
    for env in environments:
        body = json.loads(host.check_output(f"curl -sf http://127.0.0.1:{env.api_port}/ready"))
        assert body["environment"] == env.environment
        assert body["database"] == env.database


def test_env_files_are_roots_alone(host, environments):
    for env in environments:
        env_file = host.file(env.env_file)
        assert env_file.mode == 0o600
        assert env_file.user == "root" and env_file.group == "root"
        assert f"ENVIRONMENT={env.environment}" in env_file.content_string


def test_record_lands_in_its_own_environment_only(host, psql, environments, vault):
    for env in environments:
        symbol = "E" + uuid.uuid4().hex[:6].upper()
        status, payload = _post(host, env.api_port, json.dumps(market_record(symbol)), api_key(vault, env.name))
        assert status == 200, payload
        assert json.loads(payload) == {"status": "success"}
        for other in environments:
            count = psql.value(f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", other.database)
            assert count == ("1" if other.database == env.database else "0"), (env.name, other.name)


def test_ingest_requires_the_api_key(host, environments):
    env = environments[0]
    status, _ = _post(host, env.api_port, json.dumps(market_record("NOKEY")), None)
    assert status == 401


def test_bad_record_gets_422_and_adds_no_row(host, psql, environments, vault):
    env = environments[1]
    symbol = "B" + uuid.uuid4().hex[:6].upper()
    bad = market_record(symbol) | {"low": "105"}  # low above open/close/high
    status, payload = _post(host, env.api_port, json.dumps(bad), api_key(vault, env.name))
    assert status == 422
    assert any("low" in map(str, err["loc"]) for err in json.loads(payload)["detail"])
    assert psql.value(f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", env.database) == "0"


def test_simulator_run_adds_four_to_eight_rows_to_dev(host, psql):
    before = int(psql.value("SELECT count(*) FROM staging.market_data", "cosc471_dev"))
    result = host.run("systemctl start market-data-simulator.service")
    assert result.rc == 0, host.check_output("journalctl -u market-data-simulator -n 20 --no-pager")
    added = int(psql.value("SELECT count(*) FROM staging.market_data", "cosc471_dev")) - before
    assert 4 <= added <= 8


def test_simulator_timer_is_scheduled_within_fifteen_minutes(host):
    assert host.service("market-data-simulator.timer").is_enabled
    next_at = int(
        host.check_output('date -d "$(systemctl show -P NextElapseUSecRealtime market-data-simulator.timer)" +%s')
    )
    # 15 minutes of period plus the timer's randomised delay (60 s).
    assert 0 < next_at - time.time() <= 15 * 60 + 60


def test_killed_api_is_restarted_and_ready_within_fifteen_seconds(host, environments):
    env = environments[2]
    unit = f"{env.unit}.service"
    old_pid = host.check_output(f"systemctl show -P MainPID {unit}")
    host.check_output(f"kill -9 {old_pid}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        new_pid = host.check_output(f"systemctl show -P MainPID {unit}")
        ready = host.run(f"curl -sf http://127.0.0.1:{env.api_port}/ready")
        if new_pid not in ("0", old_pid) and ready.rc == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{unit} was not ready again within 15 s of kill -9")


def test_apis_reach_the_local_database_over_its_unix_socket(host, psql, environments):
    """With PostgreSQL on the same host the APIs use its socket (SCRAM, no TLS): no API session
    comes over TCP (a socket session has no client address)."""
    for env in environments:
        host.check_output(f"curl -sf http://127.0.0.1:{env.api_port}/ready")  # at least one session
        env_file = host.file(env.env_file).content_string
        assert "@/" + env.database + "?host=/var/run/postgresql&port=" in env_file
    sessions = psql.value(
        "SELECT count(*) FILTER (WHERE client_addr IS NULL) || ' ' "
        "|| count(*) FILTER (WHERE client_addr IS NOT NULL) "
        "FROM pg_stat_activity WHERE application_name LIKE 'dw-ingest-%'"
    )
    over_socket, over_tcp = map(int, sessions.split())
    assert over_socket >= len(environments) and over_tcp == 0, sessions


def _client_requests(host, name: str) -> dict:
    """dw-status' view of one API: its client requests by class, and since when it counts them."""
    status = json.loads(host.run("dw-status --json").stdout)
    return next(api for api in status["sections"]["apis"] if api["name"] == name)


def test_dw_status_counts_client_requests_since_a_restart_a_first_5xx_included(host, psql, environments, vault):
    env = environments[2]
    restarted_at = int(host.check_output("date +%s"))
    host.check_output(f"systemctl restart {env.unit}.service")
    wait_for(lambda: host.run(f"curl -sf http://127.0.0.1:{env.api_port}/ready").rc == 0, 30, f"{env.unit} ready")
    fresh = _client_requests(host, env.name)
    # Its own /ready and /metrics probes and Prometheus' scrapes are not client requests.
    assert fresh["requests"] == {"2xx": 0, "4xx": 0, "5xx": 0, "other": 0}, fresh
    assert calendar.timegm(time.strptime(fresh["since"], "%Y-%m-%dT%H:%M:%SZ")) >= restarted_at - 1, fresh

    key = api_key(vault, env.name)
    assert _post(host, env.api_port, json.dumps(market_record("DWS" + uuid.uuid4().hex[:4].upper())), key)[0] == 200
    assert _post(host, env.api_port, json.dumps(market_record("DWSBAD") | {"low": "105"}), key)[0] == 422
    # A fault the service does not expect (its table gone) answers the JSON 500: the first 5xx of
    # this process, which increase() over Prometheus' series would not show.
    psql.value("ALTER TABLE staging.market_data RENAME TO market_data_aside", env.database)
    try:
        status, payload = _post(host, env.api_port, json.dumps(market_record("DWS5XX")), key)
    finally:
        psql.value("ALTER TABLE staging.market_data_aside RENAME TO market_data", env.database)
    assert status == 500, payload
    counted = _client_requests(host, env.name)
    assert counted["requests"] == {"2xx": 1, "4xx": 1, "5xx": 1, "other": 0}, counted
    assert counted["since"] == fresh["since"]
    text = host.check_output("dw-status || true")
    # Kept for the record (the closing note shows it): dw-status after a client's requests.
    record = PROJECT / ".cache" / "dw-status-after-client-requests.txt"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(text + "\n")
    print(text)
    assert f"1 2xx, 1 4xx, 1 5xx since {fresh['since']}" in text, text

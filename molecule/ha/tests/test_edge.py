"""The data collection team's path: HTTPS from ha-client1 through the edge on ha-api1 to the member that leads."""

from __future__ import annotations

import json
import re
import shlex
import time
import uuid

from conftest import api_key, leading, psql, start_load, stop_load
from support import market_record


def _curl(client, url: str, *options: str):
    return client.run("curl -sS --max-time 10 " + " ".join(options) + f" {shlex.quote(url)}")


def test_https_post_from_the_client_lands_in_its_own_database(client, environments, vault):
    lead = leading()
    for env in environments:
        symbol = f"E{uuid.uuid4().hex[:6].upper()}"
        result = _curl(
            client,
            f"https://ha-api1:{env['edge_port']}/ingest/market-data/",
            "-X POST",
            "-H 'Content-Type: application/json'",
            f"-H {shlex.quote('X-API-Key: ' + api_key(vault, env['name']))}",
            f"--data-binary {shlex.quote(json.dumps(market_record(symbol)))}",
        )
        assert result.rc == 0, result.stderr
        assert json.loads(result.stdout) == {"status": "success"}
        for other in environments:
            count = psql(lead, f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", other["database"])
            assert count == ("1" if other == env else "0"), (env["name"], other["name"], count)


def test_the_edge_requires_the_api_key(client, environments):
    env = environments[0]
    result = _curl(
        client,
        f"https://ha-api1:{env['edge_port']}/ingest/market-data/",
        "-o /dev/null -w '%{http_code}'",
        "-X POST",
        "-H 'Content-Type: application/json'",
        f"--data-binary {shlex.quote(json.dumps(market_record('NOKEY')))}",
    )
    assert result.stdout == "401"


def test_tls_is_modern_and_strict(client, environments):
    url = f"https://ha-api1:{environments[1]['edge_port']}/health"
    headers = _curl(client, url, "-D - -o /dev/null")
    assert headers.rc == 0 and " 200" in headers.stdout.splitlines()[0], headers.stdout
    assert "strict-transport-security: max-age=" in headers.stdout.lower()
    # TLS 1.1 and older: refused in the handshake.
    assert _curl(client, url, "--tlsv1.1 --tls-max 1.1").rc != 0
    # TLS 1.2 still works, for older clients.
    assert _curl(client, url, "--tlsv1.2 --tls-max 1.2 -o /dev/null").rc == 0


def test_plain_http_is_never_served(client, environments):
    env = environments[1]
    result = _curl(client, f"http://ha-api1:{env['edge_port']}/health", "-D - -o /dev/null")
    status = result.stdout.splitlines()[0] if result.stdout else ""
    # Redirected to https (or refused), never answered with the API's body.
    assert result.rc != 0 or " 301" in status, result.stdout
    if result.rc == 0:
        assert f"location: https://ha-api1:{env['edge_port']}/health" in result.stdout.lower()


def test_a_certificate_the_client_does_not_trust_fails(client, environments):
    client.check_output(
        "cd /tmp && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=other-ca -keyout other-ca.key -out other-ca.crt 2>/dev/null"
    )
    # Only that CA: curl would otherwise also read the system's trust directory, which has the right one.
    client.check_output("install -d /tmp/no-ca-dir")
    result = _curl(
        client,
        f"https://ha-api1:{environments[0]['edge_port']}/health",
        "--cacert /tmp/other-ca.crt --capath /tmp/no-ca-dir",
    )
    assert result.rc == 60, (result.rc, result.stderr)


def test_the_request_id_travels_through_and_the_client_address_is_logged(client, api, address, environments, vault):
    env = environments[2]
    request_id = uuid.uuid4().hex
    result = _curl(
        client,
        f"https://ha-api1:{env['edge_port']}/ingest/market-data/",
        "-D - -o /dev/null",
        "-X POST",
        "-H 'Content-Type: application/json'",
        f"-H 'X-Request-ID: {request_id}'",
        f"-H {shlex.quote('X-API-Key: ' + api_key(vault, env['name']))}",
        f"--data-binary {shlex.quote(json.dumps(market_record('RID')))}",
    )
    assert f"x-request-id: {request_id}" in result.stdout.lower()
    journal = api.check_output(f"journalctl --no-pager -o cat -u {env['unit']} -n 200")
    assert request_id in journal
    # The edge's own access log names the client (ha-client1), not the proxy.
    edge_log = api.check_output("journalctl --no-pager -o cat -t dw_edge -n 500")
    line = next(json.loads(entry) for entry in edge_log.splitlines() if request_id in entry)
    assert line["client"] == address["ha-client1"] and line["status"] == "200" and line["tls"].startswith("TLSv1."), (
        line
    )


def test_a_body_over_the_limit_gets_the_apis_own_413(client, api, environments, vault):
    env = environments[1]
    key = shlex.quote("X-API-Key: " + api_key(vault, env["name"]))
    # 5 MB of JSON-ish bytes, over the 4 MiB the API and the edge allow.
    body = "head -c 5000000 /dev/zero | tr '\\0' 'a'"
    write = "-w '\\n%{http_code} %{content_type}' -X POST -H 'Content-Type: application/json' --data-binary @-"
    # curl asks with Expect: 100-continue, so both answer before the body is sent.
    edge = client.run(
        f"{body} | curl -sS {write} -H {key} https://ha-api1:{env['edge_port']}/ingest/market-data/"
    ).stdout
    direct = api.run(
        f"{body} | curl -sS {write} -H {key} http://127.0.0.1:{env['api_port']}/ingest/market-data/"
    ).stdout
    assert edge.splitlines()[-1].startswith("413 application/json"), edge[-300:]
    assert edge == direct, (edge[-300:], direct[-300:])


def test_a_client_over_its_rate_is_told_to_retry_later(client, environments):
    url = f"https://ha-api1:{environments[0]['edge_port']}/health"
    # 300 requests on one kept-alive connection, far above the per-client rate; the headers of each.
    out = client.check_output("curl -sS -D - " + " ".join([f"-o /dev/null {url}"] * 300))
    statuses = re.findall(r"^HTTP/[0-9.]+ (\d{3})", out, re.M)
    assert len(statuses) == 300 and "200" in statuses and "429" in statuses, sorted(set(statuses))
    limited = out[out.index(" 429") :].split("\r\n\r\n")[0].lower()
    assert "retry-after:" in limited, limited
    time.sleep(3)  # the bucket refills before the next test


# Restarting an API unit costs a client of the edge no request: the edge keeps the client's
# connection and sends a request that could not reach the unit again (the POST is idempotent).
RESTART_LOAD = "/run/edge-load"


def test_restarting_each_unit_under_load_fails_no_request(client, api, environments, vault):
    # A symbol of this run's own per environment: the rows it stored are exactly those with it.
    symbols = {e["name"]: f"EDGE{uuid.uuid4().hex[:6].upper()}{e['name'][0].upper()}" for e in environments}
    # One kept-alive connection per environment, as a client of the edge keeps it; about 12
    # requests a second each, under the edge's per-client rate limit.
    targets = [
        {
            "name": e["name"],
            "url": f"https://ha-api1:{e['edge_port']}/ingest/market-data/",
            "key": api_key(vault, e["name"]),
            "symbol": symbols[e["name"]],
            "keepalive": True,
            "pause": 0.08,
        }
        for e in environments
    ]
    start_load(client, RESTART_LOAD, targets)

    restarts = 0
    for _ in range(2):
        for env in environments:
            time.sleep(1.5)
            api.check_output(f"systemctl restart {env['unit']}.service")
            restarts += 1
    time.sleep(2)
    result = stop_load(client, RESTART_LOAD)

    print(
        f"restarts under load: {restarts}; per environment: "
        + ", ".join(f"{name} sent={r['sent']} acked={r['acked']}" for name, r in result.items())
    )
    for env in environments:
        stats = result[env["name"]]
        assert stats["failures"] == [], (env["name"], stats["failures"][:5])
        assert stats["acked"] == stats["sent"] > 50, stats
        symbol = symbols[env["name"]]
        stored = int(
            psql(leading(), f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", env["database"])
        )
        assert stored == stats["acked"], (env["name"], stored, stats)

"""The data collection team's path: HTTPS from client1 through the edge on api1 to the database on db1."""

from __future__ import annotations

import json
import re
import time
import shlex
import uuid
from datetime import UTC, datetime

from conftest import api_key, psql


def _record(symbol: str) -> str:
    return json.dumps({"symbol": symbol, "ts": datetime.now(UTC).isoformat(), "open": "101.25", "high": "102.5",
                       "low": "100.75", "close": "101.9", "volume": 1200, "vwap": "101.6"})


def _curl(client, url: str, *options: str):
    return client.run("curl -sS --max-time 10 " + " ".join(options) + f" {shlex.quote(url)}")


def test_https_post_from_the_client_lands_in_its_own_database(client1, db1, environments, vault):
    for env in environments:
        symbol = f"E{uuid.uuid4().hex[:6].upper()}"
        result = _curl(client1, f"https://api1:{env.edge_port}/ingest/market-data/", "-X POST",
                       "-H 'Content-Type: application/json'", f"-H {shlex.quote('X-API-Key: ' + api_key(vault, env.name))}",
                       f"--data-binary {shlex.quote(_record(symbol))}")
        assert result.rc == 0, result.stderr
        assert json.loads(result.stdout) == {"status": "success"}
        for other in environments:
            count = psql(db1, f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", other.database)
            assert count == ("1" if other is env else "0"), (env.name, other.name, count)


def test_the_edge_requires_the_api_key(client1, environments):
    env = environments[0]
    result = _curl(client1, f"https://api1:{env.edge_port}/ingest/market-data/", "-o /dev/null -w '%{http_code}'",
                   "-X POST", "-H 'Content-Type: application/json'", f"--data-binary {shlex.quote(_record('NOKEY'))}")
    assert result.stdout == "401"


def test_tls_is_modern_and_strict(client1, environments):
    url = f"https://api1:{environments[1].edge_port}/health"
    headers = _curl(client1, url, "-D - -o /dev/null")
    assert headers.rc == 0 and " 200" in headers.stdout.splitlines()[0], headers.stdout
    assert "strict-transport-security: max-age=" in headers.stdout.lower()
    # TLS 1.1 and older: refused in the handshake.
    assert _curl(client1, url, "--tlsv1.1 --tls-max 1.1").rc != 0
    # TLS 1.2 still works, for older clients.
    assert _curl(client1, url, "--tlsv1.2 --tls-max 1.2 -o /dev/null").rc == 0


def test_plain_http_is_never_served(client1, environments):
    env = environments[1]
    result = _curl(client1, f"http://api1:{env.edge_port}/health", "-D - -o /dev/null")
    status = result.stdout.splitlines()[0] if result.stdout else ""
    # Redirected to https (or refused), never answered with the API's body.
    assert result.rc != 0 or " 301" in status, result.stdout
    if result.rc == 0:
        assert f"location: https://api1:{env.edge_port}/health" in result.stdout.lower()


def test_a_certificate_the_client_does_not_trust_fails(client1, environments):
    client1.check_output("cd /tmp && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                         "-subj /CN=other-ca -keyout other-ca.key -out other-ca.crt 2>/dev/null")
    # Only that CA: curl would otherwise also read the system's trust directory, which has the right one.
    client1.check_output("install -d /tmp/no-ca-dir")
    result = _curl(client1, f"https://api1:{environments[0].edge_port}/health",
                   "--cacert /tmp/other-ca.crt --capath /tmp/no-ca-dir")
    assert result.rc == 60, (result.rc, result.stderr)


def test_the_request_id_travels_through_and_the_client_address_is_logged(client1, api1, address, environments,
                                                                         vault):
    env = environments[2]
    request_id = uuid.uuid4().hex
    result = _curl(client1, f"https://api1:{env.edge_port}/ingest/market-data/", "-D - -o /dev/null", "-X POST",
                   "-H 'Content-Type: application/json'", f"-H 'X-Request-ID: {request_id}'",
                   f"-H {shlex.quote('X-API-Key: ' + api_key(vault, env.name))}", f"--data-binary {shlex.quote(_record('RID'))}")
    assert f"x-request-id: {request_id}" in result.stdout.lower()
    journal = api1.check_output(f"journalctl --no-pager -o cat -u {env.unit} -n 200")
    assert request_id in journal
    # The edge's own access log names the client (client1), not the proxy.
    edge_log = api1.check_output("journalctl --no-pager -o cat -t dw_edge -n 500")
    line = next(json.loads(entry) for entry in edge_log.splitlines() if request_id in entry)
    assert line["client"] == address["client1"] and line["status"] == "200" and line["tls"].startswith("TLSv1."), line


def test_a_body_over_the_limit_gets_the_apis_own_413(client1, api1, environments, vault):
    env = environments[1]
    key = shlex.quote("X-API-Key: " + api_key(vault, env.name))
    # 5 MB of JSON-ish bytes, over the 4 MiB the API and the edge allow.
    body = "head -c 5000000 /dev/zero | tr '\\0' 'a'"
    write = "-w '\\n%{http_code} %{content_type}' -X POST -H 'Content-Type: application/json' --data-binary @-"
    # curl asks with Expect: 100-continue, so both answer before the body is sent.
    edge = client1.run(f"{body} | curl -sS {write} -H {key} https://api1:{env.edge_port}/ingest/market-data/").stdout
    direct = api1.run(f"{body} | curl -sS {write} -H {key} http://127.0.0.1:{env.api_port}/ingest/market-data/").stdout
    assert edge.splitlines()[-1].startswith("413 application/json"), edge[-300:]
    assert edge == direct, (edge[-300:], direct[-300:])


def test_a_client_over_its_rate_is_told_to_retry_later(client1, environments):
    url = f"https://api1:{environments[0].edge_port}/health"
    # 300 requests on one kept-alive connection, far above the per-client rate; the headers of each.
    out = client1.check_output("curl -sS -D - " + " ".join([f"-o /dev/null {url}"] * 300))
    statuses = re.findall(r"^HTTP/[0-9.]+ (\d{3})", out, re.M)
    assert len(statuses) == 300 and "200" in statuses and "429" in statuses, sorted(set(statuses))
    limited = out[out.index(" 429") :].split("\r\n\r\n")[0].lower()
    assert "retry-after:" in limited, limited
    time.sleep(3)  # the bucket refills before the next test

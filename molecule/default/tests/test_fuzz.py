"""Bad input against the deployed APIs: schemathesis from their own OpenAPI schemas plus hand-written
hostile cases. Zero 5xx, zero rows from rejected requests, every service still ready afterwards."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from conftest import api_key

FUZZ_VENV = "/opt/dw-fuzz"
SCHEMATHESIS = "schemathesis==4.32.5"
# The hooks app/tests/test_schemathesis.py runs the same command with: they put a drawn record's
# prices in a valid order (a rule between fields, which a JSON Schema cannot state), so that
# positive_data_acceptance tests what the schema promises. Copied to the host next to the venv.
HOOKS = Path(__file__).resolve().parents[3] / "app" / "tests" / "schemathesis_hooks.py"
HOOKS_ON_HOST = f"{FUZZ_VENV}/schemathesis_hooks.py"

# name -> (shell snippet writing the body to stdout, content type)
HOSTILE = {
    "huge-number": (
        """printf '%s' '{"symbol":"HUGE","ts":"2026-01-01T00:00:00Z","open":1e999999,"high":2,"low":1,"close":1,"volume":1,"vwap":1}'""",
        "application/json",
    ),
    "nan": (
        """printf '%s' '{"symbol":"NAN","ts":"2026-01-01T00:00:00Z","open":NaN,"high":2,"low":1,"close":1,"volume":1,"vwap":1}'""",
        "application/json",
    ),
    "infinity": (
        """printf '%s' '{"symbol":"INF","ts":"2026-01-01T00:00:00Z","open":1,"high":Infinity,"low":1,"close":1,"volume":1,"vwap":1}'""",
        "application/json",
    ),
    "negative-volume": (
        """printf '%s' '{"symbol":"NEG","ts":"2026-01-01T00:00:00Z","open":1,"high":2,"low":1,"close":1,"volume":-1,"vwap":1}'""",
        "application/json",
    ),
    "naive-ts": (
        """printf '%s' '{"symbol":"NAIVE","ts":"2026-01-01T00:00:00","open":1,"high":2,"low":1,"close":1,"volume":1,"vwap":1}'""",
        "application/json",
    ),
    "ten-mb": ("""head -c 10485760 /dev/zero | tr '\\0' 'a' | sed 's/^/{"symbol":"/; s/$/"}/'""", "application/json"),
    "deep-nesting": ("""python3 -c "print('['*200000 + ']'*200000)" """, "application/json"),
    "invalid-utf8": ("""printf '{"symbol":"\\377\\376","ts":"2026-01-01T00:00:00Z"}'""", "application/json"),
    "sql-in-symbol": (
        """printf '%s' '{"symbol":"X\\u0027); DROP TABLE staging.market_data; --","ts":"2026-01-01T00:00:00Z","open":1,"high":2,"low":1,"close":1,"volume":1,"vwap":1}'""",
        "application/json",
    ),
    "wrong-content-type": ("""printf '%s' 'symbol=AAPL&open=1'""", "application/x-www-form-urlencoded"),
    "batch-of-10001": (
        """python3 -c "import json; print(json.dumps([{'symbol':'BIG','ts':'2026-01-01T00:00:%02d.%06dZ' % (i // 1000000 % 60, i % 1000000),'open':1,'high':2,'low':1,'close':1,'volume':1,'vwap':1} for i in range(10001)]))" """,
        "application/json",
    ),
}


def _requests_served(host, port: int, status: str = r"\d+") -> int:
    metrics = host.check_output(f"curl -sf http://127.0.0.1:{port}/metrics")
    pattern = r'^dw_ingest_requests_total\{[^}]*status="' + status + r'"[^}]*\} (\S+)$'
    return int(sum(float(m) for m in re.findall(pattern, metrics, re.M)))


def test_hostile_inputs_get_4xx_and_store_nothing(host, psql, environments, vault):
    tried = 0
    for env in environments:
        before = psql.value("SELECT count(*) FROM staging.market_data", env.database)
        for name, (body, content_type) in HOSTILE.items():
            path = "/ingest/market-data/batch" if name.startswith("batch") else "/ingest/market-data/"
            status = host.check_output(
                f"{body} | curl -s -o /dev/null -w '%{{http_code}}' -X POST -H 'Content-Type: {content_type}' "
                f"-H {shlex.quote('X-API-Key: ' + api_key(vault, env.name))} --data-binary @- "
                f"http://127.0.0.1:{env.api_port}{path}"
            )
            assert 400 <= int(status) < 500, (env.name, name, status)
            tried += 1
        assert psql.value("SELECT count(*) FROM staging.market_data", env.database) == before, env.name
        assert host.run(f"curl -sf http://127.0.0.1:{env.api_port}/ready").rc == 0
    print(f"hostile cases tried: {tried}")


def test_schemathesis_passes_every_check_on_any_environment(host, environments, vault):
    if not host.file(f"{FUZZ_VENV}/bin/st").exists:
        host.check_output(
            f"python3 -m venv {FUZZ_VENV} && {FUZZ_VENV}/bin/pip install -q --disable-pip-version-check {SCHEMATHESIS}"
        )
    host.check_output(f"printf '%s' {shlex.quote(HOOKS.read_text())} > {HOOKS_ON_HOST}")
    total = 0
    for env in environments:
        served_before = _requests_served(host, env.api_port)
        errors_before = _requests_served(host, env.api_port, r"5\d\d")
        # Every check: status codes, bodies, headers and media types as documented, valid requests
        # accepted and invalid ones refused, not only "no 5xx".
        result = host.run(
            f"SCHEMATHESIS_HOOKS={HOOKS_ON_HOST} {FUZZ_VENV}/bin/st run "
            f"http://127.0.0.1:{env.api_port}/openapi.json --checks all "
            f"--max-examples 40 -H {shlex.quote('X-API-Key: ' + api_key(vault, env.name))} --no-color"
        )
        assert result.rc == 0, result.stdout[-3000:]
        tried = _requests_served(host, env.api_port) - served_before
        assert tried >= 40, tried
        total += tried
        assert _requests_served(host, env.api_port, r"5\d\d") == errors_before, env.name
        assert host.run(f"curl -sf http://127.0.0.1:{env.api_port}/ready").rc == 0
    print(f"schemathesis requests against the deployed APIs: {total}")

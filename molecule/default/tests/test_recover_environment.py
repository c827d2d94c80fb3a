"""Recovering one environment (playbooks/recover-environment.yml) without rewinding the others.

All three environments take load through their APIs, then T is noted. Prod keeps taking load
through its API for the rest of the exercise while dev's table is dropped and dev is recovered to
T. Dev then holds exactly its rows as of T, with the owner and privileges the postgresql role
gives; every prod request of the whole exercise was acknowledged and stored; test is untouched;
and a rerun of the same recovery is refused before it changes anything.

Runs before test_restore.py and test_rotation.py (module order) and leaves the environments as a
converge makes them: dev's table is back, with its grants, and every API is ready.
"""

from __future__ import annotations

import json
import re
import secrets
import time

from conftest import api_key, run_playbook, start_load, stop_load
from support import burst

TABLE = "staging.market_data"
# Every column, in id order: two equal fingerprints mean the same rows, value for value.
FINGERPRINT = f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM {TABLE} t"
LATE_SYMBOL = "RECOVER.LATE"
WARMUP_LOAD = "/run/recover-warmup-load"
PROD_LOAD = "/run/recover-prod-load"


def _target(env, vault, symbol: str, pause: float = 0.02) -> dict:
    return {
        "name": env.name,
        "url": f"http://127.0.0.1:{env.api_port}/ingest/market-data/",
        "key": api_key(vault, env.name),
        "symbol": symbol,
        "keepalive": False,
        "pause": pause,
    }


def _acl(psql, env) -> str:
    """Owner and privileges of the environment's table, with its database's name taken out (in any order)."""
    acl = psql.value(
        f"SELECT pg_get_userbyid(relowner) || ' ' || relacl::text FROM pg_class WHERE oid = '{TABLE}'::regclass",
        env.database,
    )
    owner, items = acl.replace(env.database, "<db>").split(" ", 1)
    return f"{owner} {sorted(items.strip('{}').split(','))}"


def _recover(env_name: str, target: str) -> tuple[str, int, float]:
    started = time.monotonic()
    result = run_playbook(
        "recover-environment.yml",
        "-e",
        json.dumps({"env": env_name, "target": target, "recover_confirm": env_name, "table": TABLE}),
    )
    # Under molecule, ANSIBLE_FORCE_COLOR outranks the run's NOCOLOR: colour codes land inside
    # wrapped lines of the report, so they go before it is read.
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    return output, result.returncode, time.monotonic() - started


def test_recover_dev_to_a_point_in_time_while_prod_keeps_writing(host, psql, environments, vault):
    by_name = {env.name: env for env in environments}
    dev, prod, test = by_name["dev"], by_name["prod"], by_name["test"]
    # A symbol of this run's own: load.py's timestamps may repeat an earlier run's on this host,
    # and a repeated (symbol, ts) is acknowledged without a new row.
    prod_symbol = f"RECOVER.P{secrets.token_hex(3).upper()}"
    prod_before = int(psql.value(f"SELECT count(*) FROM {TABLE} WHERE symbol = '{prod_symbol}'", prod.database))
    acl_prod = _acl(psql, prod)

    start_load(host, PROD_LOAD, [_target(prod, vault, prod_symbol)])
    burst(host, WARMUP_LOAD, [_target(dev, vault, "RECOVER.DEV"), _target(test, vault, "RECOVER.TEST")], seconds=3)

    # T falls between two equal fingerprints: no dev commit happened around it (the simulator may
    # write to dev at any moment; then try again).
    for _ in range(5):
        dev_at_t = psql.value(FINGERPRINT, dev.database)
        target = psql.value("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
        if psql.value(FINGERPRINT, dev.database) == dev_at_t:
            break
    else:
        raise AssertionError("dev kept changing around T")
    test_at_t = psql.value(FINGERPRINT, test.database)
    dev_rows_at_t = int(dev_at_t.split(":")[0])

    # After T: more dev writes through its API (they must not come back), then the mistake.
    burst(host, WARMUP_LOAD, [_target(dev, vault, LATE_SYMBOL)])
    psql.value(f"DROP TABLE {TABLE}", dev.database)

    output, returncode, seconds = _recover("dev", target)
    prod_result = stop_load(host, PROD_LOAD)[prod.name]
    assert returncode == 0, output[-4000:]

    # Dev: exactly its rows as of T, none of the writes after it, owned and granted as in every
    # other environment. (The simulator, put back at the end, may already have written again.)
    assert psql.value(f"{FINGERPRINT} WHERE ingested_at <= '{target}'", dev.database) == dev_at_t
    assert (
        psql.value(
            f"SELECT count(*) FROM {TABLE} WHERE symbol LIKE 'RECOVER.%' AND ingested_at > '{target}'", dev.database
        )
        == "0"
    )
    assert _acl(psql, dev) == acl_prod
    # Prod: every request of the whole exercise acknowledged and stored.
    assert prod_result["failures"] == [], prod_result["failures"][:5]
    assert prod_result["acked"] > 0
    prod_stored = int(psql.value(f"SELECT count(*) FROM {TABLE} WHERE symbol = '{prod_symbol}'", prod.database))
    assert prod_stored - prod_before == prod_result["acked"], (prod_stored, prod_before, prod_result)
    # Test: untouched.
    assert psql.value(FINGERPRINT, test.database) == test_at_t

    # The report as one line (the output wraps it).
    report = re.search(r"recovered dev \(.*? took [\d.]+ s", " ".join(output.split())).group(0)
    reached = re.search(r"reached (\S+ \S+);", report).group(1)
    assert psql.value(f"SELECT '{reached}'::timestamptz <= '{target}'::timestamptz") == "t", report
    assert f"rows before none, after {dev_rows_at_t};" in report, report
    assert "kept aside: none (it did not exist)" in report, report

    # Dev's API is back and writes through its writer role.
    burst(host, WARMUP_LOAD, [_target(dev, vault, "RECOVER.AFTER")])
    # This test's rows only: the simulator's timer, put back by the recovery, may write to dev at
    # any moment (seen in CI: four simulator rows landed during the rerun). A rerun that rewound or
    # recreated dev's table would still show here (RECOVER.AFTER's rows, new ids).
    own_rows = f"{FINGERPRINT} WHERE symbol LIKE 'RECOVER.%'"
    dev_now = psql.value(own_rows, dev.database)

    # A rerun of the same recovery is refused before anything stops or changes.
    rerun_output, rerun_code, _ = _recover("dev", target)
    assert rerun_code != 0
    assert f"was already recovered to {target}" in " ".join(rerun_output.split()), rerun_output[-3000:]
    assert "Stop the API unit" not in rerun_output
    assert psql.value(own_rows, dev.database) == dev_now
    print(
        f"recover dev to T under prod load: {seconds:.1f} s playbook, {dev_rows_at_t} dev rows back; "
        f"prod {prod_result['acked']} acknowledged, {len(prod_result['failures'])} failed; {report.strip()}"
    )

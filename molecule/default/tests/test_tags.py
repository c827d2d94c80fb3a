"""Every tag the manual offers runs alone on the converged host with something to repair (the
slice puts it back and reports a change); then all of them again at once, with nothing to do
(changed=0). One run for the second half instead of one per tag: each run of site.yml costs
tens of seconds, and a tag that changed something with nothing to do changes it in any company.

The tags come from the manual's page with the tags table (docs/daily-operation.md, "Rerunning one
slice"), so a tag it offers without a case here fails the test.
"""

from __future__ import annotations

import re

import pytest
from conftest import PROJECT, run_playbook

TAGS_PAGE = PROJECT / "docs" / "daily-operation.md"
DOC_TAGS = sorted(set(re.findall(r"--tags ([a-z_]+)", TAGS_PAGE.read_text())))

CONF_DIR = "$(dirname \"$(runuser -u postgres -- psql -XAtc 'SHOW config_file')\")"


def _cases(environments) -> dict[str, tuple[str, str]]:
    """tag -> (shell that breaks something the slice owns, shell that exits 0 once it is repaired)."""
    prod, dev, test = environments[0], environments[1], environments[2]
    conf = f"{CONF_DIR}/conf.d/50-dw-platform.conf"
    reader = dev.names["reader_role"]
    marker = f"runuser -u postgres -- psql -XAt -d {test.database} -c"
    return {
        "postgresql_config": (f"echo '# drift' >> {conf}", f"! grep -q '# drift' {conf}"),
        "postgresql_databases": (
            f"runuser -u postgres -- psql -XAtc 'ALTER ROLE {reader} CREATEDB'",
            f'test "$(runuser -u postgres -- psql -XAtc "SELECT rolcreatedb FROM pg_roles'
            f" WHERE rolname = '{reader}'\")\" = f",
        ),
        "postgresql_schema": (
            f"{marker} \"COMMENT ON SCHEMA staging IS 'drift'\"",
            f"{marker} \"SELECT obj_description('staging'::regnamespace)\" | grep -q sha256",
        ),
        "pgbackrest_config": (
            "echo '# drift' >> /etc/pgbackrest/pgbackrest.conf",
            "! grep -q '# drift' /etc/pgbackrest/pgbackrest.conf",
        ),
        "pgbackrest_timers": (
            "sed -i 's/02:30:00/04:00:00/' /etc/systemd/system/pgbackrest-daily.timer",
            "grep -q 02:30:00 /etc/systemd/system/pgbackrest-daily.timer",
        ),
        "ingest_api_config": (
            f"sed -i 's/^LOG_LEVEL=.*/LOG_LEVEL=debug/' {dev.env_file}",
            f"grep -qx LOG_LEVEL=info {dev.env_file} && curl -sf http://127.0.0.1:{dev.api_port}/ready",
        ),
        "ingest_api_release": (
            "rm /opt/dw-ingest/current",
            f"test -L /opt/dw-ingest/current && curl -sf http://127.0.0.1:{prod.api_port}/ready",
        ),
        "market_data_simulator": (
            "systemctl disable --now market-data-simulator.timer",
            "systemctl is-active market-data-simulator.timer",
        ),
    }


def _changed(output: str) -> int:
    recap = output.split("PLAY RECAP")[-1]
    return sum(int(n) for n in re.findall(r"changed=(\d+)", recap))


def test_the_manual_offers_tags_and_each_has_a_case(environments):
    assert DOC_TAGS, f"{TAGS_PAGE} names no --tags slice"
    assert set(DOC_TAGS) <= set(_cases(environments)), set(DOC_TAGS) - set(_cases(environments))


@pytest.mark.parametrize("tag", DOC_TAGS)
def test_tag_runs_alone_and_repairs_what_it_owns(host, environments, tag):
    breaks, repaired = _cases(environments)[tag]
    host.check_output(breaks)

    fixing = run_playbook("../site.yml", "--tags", tag)
    output = fixing.stdout + fixing.stderr
    assert fixing.returncode == 0, output[-3000:]
    assert _changed(output) > 0, output[-3000:]
    assert host.run(repaired).rc == 0, f"--tags {tag} did not repair what it owns"


def test_the_tags_change_nothing_once_repaired():
    again = run_playbook("../site.yml", "--tags", ",".join(DOC_TAGS))
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert _changed(output) == 0, output[-3000:]

"""The alert rules, checked and unit-tested by promtool (tests/promtool/dw-alerts.test.yml).

promtool comes from Debian's own prometheus package, the version the servers run: `apt-get download`
and `dpkg-deb -x` into .cache/promtool once (promtool alone is kept, about 48 MB), without installing the service here.
DW_PROMTOOL names another promtool. The rules are rendered from the role's template with the role's
default thresholds, as a converge with no overrides would render them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from conftest import load_source

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "monitoring"
CACHE = ROOT / ".cache" / "promtool"


@pytest.fixture(scope="session")
def promtool() -> str:
    if os.environ.get("DW_PROMTOOL"):
        return os.environ["DW_PROMTOOL"]
    binary = CACHE / "usr" / "bin" / "promtool"
    if not binary.exists():
        download = CACHE / "deb"
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "prometheus"], cwd=download, check=True, capture_output=True)
        (deb,) = download.glob("prometheus_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(download / "root")], check=True)
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(download / "root" / "usr" / "bin" / "promtool", binary)
        shutil.rmtree(download)
    return str(binary)


# The inventory facts the defaults derive from (templated there): a three-member Patroni cluster in
# synchronous mode, whose DwPatroni*/DwEtcd* rules are rendered and tested with the others.
PATRONI_CLUSTER = {
    "monitoring_patroni_hosts": ["ha-db1", "ha-db2", "ha-db3"],
    "monitoring_etcd_hosts": ["ha-db1", "ha-db2", "ha-db3"],
    "monitoring_patroni_synchronous_mode": True,
}


def render_rules(directory: Path, **overrides: object) -> Path:
    """dw-alerts.yml.j2 with the role's defaults ([[ ]] delimiters: {{ }} is Prometheus' own), for a
    Patroni cluster unless overrides say otherwise."""
    source = (ROLE / "templates" / "dw-alerts.yml.j2").read_text()
    first_line, body = source.split("\n", 1)
    assert first_line.startswith("#jinja2:"), "the template must keep its delimiter override line"
    env = jinja2.Environment(  # noqa: S701 - renders YAML, not HTML
        variable_start_string="[[",
        variable_end_string="]]",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    # The unit names the rules' commands give are the pgbackrest role's (its pgbackrest_unit filter).
    units = load_source(ROLE / "filter_plugins" / "pgbackrest_units.py", "pgbackrest_units")
    env.filters.update(units.FilterModule().filters())
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()) | PATRONI_CLUSTER | overrides
    rules = directory / "dw-alerts.yml"
    rules.write_text(env.from_string(body).render(**defaults))
    return rules


def test_rules_pass_promtool_check(promtool: str, tmp_path: Path) -> None:
    rules = render_rules(tmp_path)
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in yaml.safe_load(rules.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_every_alert_has_a_summary_a_command_and_a_unit_test(tmp_path: Path) -> None:
    rules = yaml.safe_load(render_rules(tmp_path).read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    for rule in alerts:
        assert rule["annotations"].get("summary") and rule["annotations"].get("command"), rule["alert"]
    tests = yaml.safe_load((ROOT / "tests" / "promtool" / "dw-alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested == {rule["alert"] for rule in alerts}


def test_every_alert_links_its_runbook_section(tmp_path: Path) -> None:
    """runbook_url: the role's base (docs/monitoring.md by default) and the alert's own heading there."""
    base = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["monitoring_runbook_base_url"]
    rules = yaml.safe_load(render_rules(tmp_path).read_text())
    for rule in (rule for group in rules["groups"] for rule in group["rules"]):
        assert rule["annotations"].get("runbook_url") == f"{base}#{rule['alert'].lower()}", rule["alert"]


def test_alert_unit_tests(promtool: str, tmp_path: Path) -> None:
    render_rules(tmp_path)
    tests = yaml.safe_load((ROOT / "tests" / "promtool" / "dw-alerts.test.yml").read_text())
    tests["rule_files"] = ["dw-alerts.yml"]
    (tmp_path / "dw-alerts.test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", "dw-alerts.test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {},
            {
                "DwPatroniNoLeader",
                "DwPatroniMemberDown",
                "DwPatroniNoSyncStandby",
                "DwPatroniReplicationLag",
                "DwPatroniFailover",
                "DwEtcdMemberDown",
            },
        ),
        (
            {"monitoring_patroni_synchronous_mode": False, "monitoring_etcd_hosts": []},
            {"DwPatroniNoLeader", "DwPatroniMemberDown", "DwPatroniReplicationLag", "DwPatroniFailover"},
        ),
        ({"monitoring_patroni_hosts": [], "monitoring_etcd_hosts": []}, set()),
    ],
    ids=["synchronous-with-etcd", "asynchronous-no-etcd", "one-database-host"],
)
def test_patroni_rules_only_for_a_patroni_cluster(
    promtool: str, tmp_path: Path, overrides: dict, expected: set[str]
) -> None:
    """The cluster's rules follow the inventory: none for one database host, no DwPatroniNoSyncStandby
    without synchronous mode, no DwEtcdMemberDown when etcd is not scraped; promtool takes each."""
    rules = render_rules(tmp_path, **overrides)
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    names = {rule["alert"] for group in yaml.safe_load(rules.read_text())["groups"] for rule in group["rules"]}
    assert {n for n in names if n.startswith(("DwPatroni", "DwEtcd"))} == expected

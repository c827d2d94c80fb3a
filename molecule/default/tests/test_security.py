"""Security, measured: unit exposure scores, the sandbox actually applied, file modes, refusals."""

from __future__ import annotations

import re

from conftest import API_CONFIG_DIR, run_playbook

MAX_EXPOSURE = 2.0


def _project_units(host) -> list[str]:
    """The services the roles install (under /etc/systemd/system) or sandbox with a drop-in
    (PostgreSQL's cluster unit, nginx), not the ones Debian's packages ship unused (such as
    pgbackrest.service, pgBackRest's TLS server, which nothing here enables)."""
    out = host.check_output(
        "cd /etc/systemd/system && ls dw-api-*.service market-data-simulator.service pgbackrest-*.service"
        " dw-backup-metrics.service"
        " && ls -d postgresql@*.service.d nginx.service.d prometheus*.service.d | sed 's/[.]d$//'")
    # The unit-failure hook is a template: score the instance a backup's failure starts.
    return sorted(out.split() + ["dw-unit-failed@pgbackrest-daily.service.service"])


def test_every_project_unit_scores_low_exposure(host, environments):
    units = _project_units(host)
    assert {f"{e.unit}.service" for e in environments} | {"market-data-simulator.service", "nginx.service"} <= set(units)
    assert any(unit.startswith("postgresql@") for unit in units), units
    assert {"prometheus.service", "prometheus-alertmanager.service", "prometheus-node-exporter.service",
            "prometheus-postgres-exporter.service", "dw-backup-metrics.service"} <= set(units)
    scores = {}
    for unit in units:
        out = host.check_output(f"systemd-analyze security --no-pager {unit}")
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
        assert match, out[-500:]
        scores[unit] = float(match.group(1))
    print("exposure scores:", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_sandbox_is_applied_to_the_running_api(host, environments):
    # The container has CAP_SYS_ADMIN, as a real host's systemd does, so namespaces are real:
    # the API sees / read-only and its own /tmp, and has no capabilities at all.
    pid = host.check_output(f"systemctl show -P MainPID {environments[0].unit}.service")
    assert pid != "0"
    mounts = host.check_output(f"cat /proc/{pid}/mountinfo")
    root_options = next(line.split()[5] for line in mounts.splitlines() if line.split()[4] == "/")
    assert root_options.split(",")[0] == "ro", root_options
    assert any(line.split()[4] == "/tmp" for line in mounts.splitlines()), "no private /tmp"
    status = host.check_output(f"cat /proc/{pid}/status")
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert re.search(r"^Seccomp:\s+2$", status, re.M)
    assert host.check_output(f"stat -c %U /proc/{pid}") == "dw-api"


def test_file_modes(host, environments):
    data_dir = host.check_output("runuser -u postgres -- psql -X -A -t -c 'SHOW data_directory'")
    assert host.file(data_dir).mode == 0o700
    assert host.file(data_dir).user == "postgres"
    for env in environments:
        env_file = host.file(env.env_file)
        assert (env_file.mode, env_file.user, env_file.group) == (0o640, "root", "dw-api")
    assert host.file(API_CONFIG_DIR).mode == 0o750
    # The directory earlier releases used is gone, with the secrets it held.
    assert not host.file("/etc/dw-ingest").exists
    conf = host.file("/etc/pgbackrest/pgbackrest.conf")
    if conf.exists:
        assert (conf.mode, conf.user) == (0o640, "postgres")


def test_opening_the_api_without_keys_is_refused():
    result = run_playbook("app.yml", "--check", "-e", "ingest_api_bind_address=0.0.0.0",
                          "-e", '{"ingest_api_keys": {}}', timeout=300)
    assert result.returncode != 0
    assert "ingest_api_keys.prod must be set" in result.stdout + result.stderr

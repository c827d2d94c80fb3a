"""PostgreSQL over the network: the APIs' sessions to the member that leads are TLS, a connection
without TLS is refused, and only loopback has plain host lines on any member."""

from __future__ import annotations

import shlex

from conftest import MEMBERS, leader, leading, member, psql, wait_healthy


def _logins(environments) -> list[str]:
    return [login for env in environments for login in env["api_logins"].values()]


def test_every_api_session_from_the_api_host_is_encrypted(address, environments):
    logins = ", ".join(f"'{login}'" for login in _logins(environments))
    rows = psql(
        leading(),
        "SELECT a.usename || ' ' || s.ssl::int || ' ' || s.version FROM pg_stat_activity a "
        f"JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr = '{address['ha-api1']}' "
        f"AND a.usename IN ({logins})",
    )
    sessions = rows.splitlines()
    assert sessions, "no API session from ha-api1 on the leader"
    assert all(" 1 TLSv1." in line for line in sessions), sessions
    assert not any(line.endswith(("TLSv1", "TLSv1.1")) for line in sessions), sessions


def _psql_from_the_api_host(api, vault, env, host, login, sslmode):
    password = vault["vault_postgresql_api_passwords"][env["name"]]
    dsn = f"host={host} dbname={env['database']} user={login} sslmode={sslmode} connect_timeout=5"
    if sslmode == "verify-full":
        dsn += " sslrootcert=/etc/ssl/certs/ca-certificates.crt"
    return api.run(f"PGPASSWORD={shlex.quote(password)} psql -X -A -t {shlex.quote(dsn)} -c 'SELECT 1'")


def test_a_connection_without_tls_from_the_api_host_is_refused(api, vault, environments):
    env = environments[1]
    name = leader(wait_healthy())
    logins = ", ".join(f"'{login}'" for login in env["api_logins"].values())
    login = psql(member(name), f"SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname IN ({logins})")
    plain = _psql_from_the_api_host(api, vault, env, name, login, "disable")
    assert plain.rc != 0
    assert "no pg_hba.conf entry" in plain.stderr and "no encryption" in plain.stderr, plain.stderr
    verified = _psql_from_the_api_host(api, vault, env, name, login, "verify-full")
    assert verified.rc == 0 and verified.stdout.strip() == "1", verified.stderr


def test_only_loopback_has_plain_host_lines_and_tls_is_at_least_1_2():
    for name in MEMBERS:
        host = member(name)
        hba = host.check_output("cat \"$(runuser -u postgres -- psql -XAtc 'SHOW hba_file')\"")
        for line in hba.splitlines():
            fields = line.split()
            if fields and fields[0] == "host":
                assert fields[3] in ("127.0.0.1/32", "::1/128"), (name, line)
        assert psql(host, "SHOW ssl_min_protocol_version") == "TLSv1.2", name
        assert psql(host, "SHOW ssl") == "on", name

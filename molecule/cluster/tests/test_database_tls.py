"""PostgreSQL over the network: the API's sessions are TLS, a connection without TLS is refused."""

from __future__ import annotations

import shlex

from conftest import psql


def test_every_api_session_from_the_api_host_is_encrypted(db1, address, environments):
    logins = ", ".join(f"'{login}'" for env in environments for login in env.api_logins)
    rows = psql(db1, "SELECT a.usename || ' ' || s.ssl::int || ' ' || s.version FROM pg_stat_activity a "
                     f"JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr = '{address['api1']}' AND a.usename IN ({logins})")
    sessions = rows.splitlines()
    assert sessions, "no API session from api1"
    assert all(" 1 TLSv1." in line for line in sessions), sessions
    assert not any(line.endswith(("TLSv1", "TLSv1.1")) for line in sessions), sessions


def _psql_from_api1(api1, vault, env, login, sslmode):
    password = vault["vault_postgresql_api_passwords"][env.name]
    dsn = f"host=db1 dbname={env.database} user={login} sslmode={sslmode} connect_timeout=5"
    if sslmode == "verify-full":
        dsn += " sslrootcert=/etc/ssl/certs/ca-certificates.crt"
    return api1.run(f"PGPASSWORD={shlex.quote(password)} psql -X -A -t {shlex.quote(dsn)} -c 'SELECT 1'")


def test_a_connection_without_tls_from_the_api_host_is_refused(api1, db1, vault, environments):
    env = environments[1]
    login = psql(db1, "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname IN "
                      f"('{env.api_logins[0]}', '{env.api_logins[1]}')")
    plain = _psql_from_api1(api1, vault, env, login, "disable")
    assert plain.rc != 0
    assert "no pg_hba.conf entry" in plain.stderr and "no encryption" in plain.stderr, plain.stderr
    verified = _psql_from_api1(api1, vault, env, login, "verify-full")
    assert verified.rc == 0 and verified.stdout.strip() == "1", verified.stderr


def test_only_loopback_has_plain_host_lines_and_tls_is_at_least_1_2(db1):
    hba = db1.check_output("cat \"$(runuser -u postgres -- psql -XAtc 'SHOW hba_file')\"")
    for line in hba.splitlines():
        fields = line.split()
        if fields and fields[0] == "host":
            assert fields[3] in ("127.0.0.1/32", "::1/128"), line
    assert psql(db1, "SHOW ssl_min_protocol_version") == "TLSv1.2"
    assert psql(db1, "SHOW ssl") == "on"

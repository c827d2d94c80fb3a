"""The database layer: cluster, databases, schema, least privilege, authentication rules."""

from __future__ import annotations

import os
import uuid

from support import role_default  # molecule/common (the migration scenario runs this file too)


def test_postgresql_service_runs_and_is_enabled(host):
    units = host.check_output("systemctl list-units --plain --no-legend 'postgresql@*' | awk '{print $1}'")
    assert units, "no postgresql@ unit is loaded"
    for unit in units.split():
        service = host.service(unit)
        assert service.is_running
        assert service.is_enabled


def test_data_checksums_and_wal_ready_for_archiving(psql):
    assert psql.value("SHOW data_checksums") == "on"
    assert psql.value("SHOW wal_level") == "replica"
    assert psql.value("SHOW archive_mode") == "on"
    assert psql.value("SHOW password_encryption") == "scram-sha-256"
    assert psql.value("SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_databases_and_table_exist(psql, environments):
    for env in environments:
        assert psql.value("SELECT to_regclass('staging.market_data') IS NOT NULL", env.database) == "t"
        assert (
            psql.value(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{env.database}'")
            == env.names["owner_role"]
        )
        assert (
            psql.value(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'staging' AND tablename = 'market_data'",
                env.database,
            )
            == env.names["owner_role"]
        )


def test_api_login_writes_own_database_and_is_refused_by_others(psql, environments, vault, active_api_login):
    for env in environments:
        login = active_api_login[env.database]
        password = vault["vault_postgresql_api_passwords"][env.name]
        symbol = "T" + uuid.uuid4().hex[:8].upper()
        insert = (
            "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
            f"VALUES ('{symbol}', now(), 10, 11, 9, 10.5, 100, 10.2)"
        )
        result = psql.run(insert, env.database, user=login, password=password)
        assert result.rc == 0, result.stderr
        assert psql.value(f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", env.database) == "1"
        psql.value(f"DELETE FROM staging.market_data WHERE symbol = '{symbol}'", env.database)
        # Least privilege: no DDL, no DELETE for the API.
        denied = psql.run(
            f"DELETE FROM staging.market_data WHERE symbol = '{symbol}'", env.database, user=login, password=password
        )
        assert denied.rc != 0 and "permission denied" in denied.stderr
        for other in environments:
            if other.database == env.database:
                continue
            refused = psql.run("SELECT 1", other.database, user=login, password=password)
            assert refused.rc != 0
            assert "no pg_hba.conf entry" in refused.stderr or "permission denied" in refused.stderr


def test_people_read_but_cannot_write(psql, environments, vault):
    password = vault["vault_postgresql_people_passwords"]["dw_alex"]
    for env in environments:
        assert (
            psql.run("SELECT count(*) FROM staging.market_data", env.database, user="dw_alex", password=password).rc
            == 0
        )
        write = psql.run(
            "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
            "VALUES ('NOPE', now(), 1, 1, 1, 1, 1, 1)",
            env.database,
            user="dw_alex",
            password=password,
        )
        assert write.rc != 0 and "permission denied" in write.stderr


def test_wrong_password_is_refused(psql, environments, active_api_login):
    env = environments[0]
    result = psql.run("SELECT 1", env.database, user=active_api_login[env.database], password="wrong-password")
    assert result.rc != 0 and "password authentication failed" in result.stderr


def test_pg_hba_has_no_weak_rules(psql):
    assert psql.value("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"
    assert (
        psql.value("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method IN ('trust', 'md5', 'password', 'ident')")
        == "0"
    )
    # postgres is reachable only over the local socket, by peer.
    assert (
        psql.value(
            "SELECT string_agg(type || ':' || auth_method, ',') FROM pg_hba_file_rules "
            "WHERE 'postgres' = ANY(user_name) OR 'all' = ANY(user_name)"
        )
        == "local:peer"
    )


def test_every_login_password_is_scram(psql):
    # The exporter's monitoring login has no password at all: pg_hba admits it by peer only.
    monitoring = role_default("postgresql", "postgresql_monitoring_login")
    assert (
        psql.value(
            "SELECT count(*) FROM pg_authid WHERE rolcanlogin AND rolname NOT IN ('postgres', "
            f"'{monitoring}') AND (rolpassword IS NULL OR rolpassword NOT LIKE 'SCRAM-SHA-256$%')"
        )
        == "0"
    )
    assert psql.value(f"SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = '{monitoring}'") == "t"
    assert (
        psql.value(
            "SELECT string_agg(type || ':' || array_to_string(database, ',') || ':' || auth_method, ' ') "
            f"FROM pg_hba_file_rules WHERE '{monitoring}' = ANY(user_name)"
        )
        == "local:postgres:peer"
    )


def test_public_has_no_connect_and_no_create_on_public(psql, environments):
    for env in environments:
        assert psql.value(f"SELECT has_database_privilege('public', '{env.database}', 'CONNECT')") == "f"
        assert psql.value("SELECT has_schema_privilege('public', 'public', 'CREATE')", env.database) == "f"


def test_only_superuser_is_postgres(psql):
    assert psql.value("SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolsuper") == "postgres"


def test_major_version_is_the_one_asked_for(psql):
    expected = os.environ.get("DW_EXPECTED_PG_MAJOR", "15")
    assert psql.value("SELECT current_setting('server_version_num')::int / 10000") == expected

"""Password rotation under load: zero failed requests, zero lost records, no secret in any output.

Runs last in the module order on purpose: it rotates every environment to new passwords (blue to
green), checks, then rotates back to the vault's passwords (green to blue), so both directions are
proven and the host ends as the vault describes.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT, api_key, run_playbook, start_load, stop_load

LOAD_DIR = "/run/rotation-load"


def _rotate(passwords: dict[str, str], tmp_path: Path, tag: str) -> str:
    extra = tmp_path / f"rotate-{tag}.yml"
    extra.write_text(yaml.safe_dump({"vault_postgresql_api_passwords": passwords}))
    extra.chmod(0o600)
    result = run_playbook("rotate-passwords.yml", "-vvv", "-e", f"@{extra}")
    extra.unlink()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def _active_login_sql(env) -> str:
    logins = ", ".join(f"'{login}'" for login in env.names["api_logins"].values())
    return f"SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname IN ({logins})"


def _can_login(psql, role: str, password: str, database: str) -> bool:
    return psql.run("SELECT 1", database, user=role, password=password).rc == 0


@pytest.fixture()
def journal_cursor(host) -> str:
    return host.check_output("journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'")


@pytest.fixture()
def back_to_the_vault(vault, tmp_path):
    """If the test stops between its rotations, the host still ends with the vault's passwords:
    the tests after this one log in with them."""
    state = {"rotated_back": False}
    yield state
    if not state["rotated_back"]:
        _rotate(vault["vault_postgresql_api_passwords"], tmp_path, "restore")


def test_rotation_under_load_loses_nothing_and_leaks_nothing(
    host, psql, environments, vault, tmp_path, journal_cursor, back_to_the_vault
):
    old = vault["vault_postgresql_api_passwords"]
    new = {e.name: secrets.token_urlsafe(24) for e in environments}
    before = {
        e.name: int(
            psql.value(f"SELECT count(*) FROM staging.market_data WHERE symbol = 'ROT{e.name.upper()}'", e.database)
        )
        for e in environments
    }
    old_logins = {e.name: psql.value(_active_login_sql(e)) for e in environments}

    start_load(
        host,
        LOAD_DIR,
        [
            {
                "name": e.name,
                "url": f"http://127.0.0.1:{e.api_port}/ingest/market-data/",
                "key": api_key(vault, e.name),
                "symbol": f"ROT{e.name.upper()}",
                "keepalive": False,
                "pause": 0.02,
            }
            for e in environments
        ],
    )
    time.sleep(2)
    outputs = [_rotate(new, tmp_path, "new")]
    time.sleep(2)
    result = stop_load(host, LOAD_DIR)

    for env in environments:
        stats = result[env.name]
        assert stats["failures"] == [], (env.name, stats["failures"][:5])
        assert stats["acked"] > 0
        stored = (
            int(
                psql.value(
                    f"SELECT count(*) FROM staging.market_data WHERE symbol = 'ROT{env.name.upper()}'", env.database
                )
            )
            - before[env.name]
        )
        assert stored == stats["acked"], (env.name, stored, stats)

        new_login = psql.value(_active_login_sql(env))
        assert new_login != old_logins[env.name]
        assert _can_login(psql, new_login, new[env.name], env.database)
        assert not _can_login(psql, old_logins[env.name], old[env.name], env.database)
        assert not _can_login(psql, new_login, old[env.name], env.database)

    # Rerun with the same secrets: nothing to do.
    again = _rotate(new, tmp_path, "again")
    assert "changed=0" in again.split("PLAY RECAP")[-1]
    outputs.append(again)

    # And back to the vault's passwords, through the other colour.
    outputs.append(_rotate(old, tmp_path, "back"))
    back_to_the_vault["rotated_back"] = True
    for env in environments:
        login = psql.value(_active_login_sql(env))
        assert login == old_logins[env.name]
        assert _can_login(psql, login, old[env.name], env.database)
        assert host.run(f"curl -sf http://127.0.0.1:{env.api_port}/ready").rc == 0

    journal = host.check_output(f"journalctl --after-cursor '{journal_cursor}' --no-pager -o cat")
    everything = "\n".join(outputs) + journal
    for secret in list(old.values()) + list(new.values()):
        assert secret not in everything


def test_every_vault_file_in_git_is_encrypted():
    files = subprocess.run(
        ["git", "ls-files", "*vault.yml"], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert files, "no vault.yml tracked"
    for name in files:
        assert (PROJECT / name).read_text().startswith("$ANSIBLE_VAULT;"), name

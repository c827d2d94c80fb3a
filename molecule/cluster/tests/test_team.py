"""Team access: a member logs in from client1 with the key, never with a password; a member set
absent loses access on the next converge; people's database roles stay read-only."""

from __future__ import annotations

import json
import shlex

from conftest import psql, run_playbook

SSH = ("ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
       "-o ConnectTimeout=5 -o LogLevel=ERROR")


def _ssh_as_dana(client, target: str, *options: str):
    return client.run(f"{SSH} {' '.join(options)} -i /root/.ssh/dana_ed25519 dana@{target} id -un")


def test_a_member_logs_in_with_the_key(client1):
    for target in ("db1", "api1", "backup1"):
        result = _ssh_as_dana(client1, target)
        assert result.rc == 0 and result.stdout.strip() == "dana", (target, result.stderr)


def test_password_and_root_logins_are_refused(client1, api1):
    password = client1.run(f"{SSH} -o PreferredAuthentications=password,keyboard-interactive "
                           "-o PubkeyAuthentication=no dana@api1 true")
    assert password.rc == 255 and "Permission denied (publickey)" in password.stderr, password.stderr
    root = client1.run(f"{SSH} -i /root/.ssh/dana_ed25519 root@api1 true")
    assert root.rc == 255
    settings = api1.check_output("sshd -T")
    for line in ("passwordauthentication no", "permitrootlogin no", "kbdinteractiveauthentication no"):
        assert line in settings, line


def test_a_member_set_absent_loses_access_on_the_next_converge(client1, api1):
    key = client1.check_output("cat /root/.ssh/dana_ed25519.pub")
    gone = {"team_access_members": [{"name": "dana", "ssh_keys": [key], "sudo": False, "state": "absent"}]}
    result = run_playbook("team.yml", "--limit", "api1", "-e", json.dumps(gone))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert _ssh_as_dana(client1, "api1").rc == 255
    assert not api1.user("dana").exists
    # The inventory as it is gives the access back.
    restored = run_playbook("team.yml", "--limit", "api1")
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-3000:]
    assert _ssh_as_dana(client1, "api1").rc == 0


def test_peoples_database_roles_stay_read_only(db1, vault, environments):
    password = vault["vault_postgresql_people_passwords"]["dw_alex"]
    env = environments[1]
    base = (f"PGPASSWORD={shlex.quote(password)} psql -X -A -t -h 127.0.0.1 -U dw_alex -d {env.database} -c ")
    assert db1.run(base + shlex.quote("SELECT count(*) >= 0 FROM staging.market_data")).stdout.strip() == "t"
    insert = db1.run(base + shlex.quote(
        "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
        "VALUES ('RO', now(), 1, 1, 1, 1, 1, 1)"))
    assert insert.rc != 0 and "permission denied" in insert.stderr, insert.stderr
    assert psql(db1, "SELECT count(*) FROM staging.market_data WHERE symbol = 'RO'", env.database) == "0"


def test_ansible_reached_every_managed_host_as_deploy_over_ssh(db1, api1, backup1):
    # As inventories/production connects: the controller (the network's gateway) logged in as deploy
    # with its key, and sudo gave it root.
    for host in (db1, api1, backup1):
        journal = host.check_output("journalctl --no-pager -o cat -u ssh.service")
        assert "Accepted publickey for deploy from 10.89.42.1 " in journal, journal[-2000:]
        assert "deploy : PWD=" in host.check_output("journalctl --no-pager -o cat _COMM=sudo -n 50")

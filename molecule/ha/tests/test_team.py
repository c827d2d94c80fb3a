"""Team access: a member logs in from ha-client1 with the key, never with a password; a member set
absent loses access on the next converge; people's database roles stay read-only."""

from __future__ import annotations

import json
import re
import shlex

from conftest import SERVERS, leading, member, psql, run_playbook

SSH = (
    "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
    "-o ConnectTimeout=5 -o LogLevel=ERROR"
)


def _ssh_as_dana(client, target: str, *options: str):
    return client.run(f"{SSH} {' '.join(options)} -i /root/.ssh/dana_ed25519 dana@{target} id -un")


def test_a_member_logs_in_with_the_key(client):
    for target in SERVERS:
        result = _ssh_as_dana(client, target)
        assert result.rc == 0 and result.stdout.strip() == "dana", (target, result.stderr)


def test_password_and_root_logins_are_refused(client, api):
    password = client.run(
        f"{SSH} -o PreferredAuthentications=password,keyboard-interactive -o PubkeyAuthentication=no dana@ha-api1 true"
    )
    assert password.rc == 255 and "Permission denied (publickey)" in password.stderr, password.stderr
    root = client.run(f"{SSH} -i /root/.ssh/dana_ed25519 root@ha-api1 true")
    assert root.rc == 255
    settings = api.check_output("sshd -T")
    for line in ("passwordauthentication no", "permitrootlogin no", "kbdinteractiveauthentication no"):
        assert line in settings, line


def test_a_member_set_absent_loses_access_on_the_next_converge(client, api):
    key = client.check_output("cat /root/.ssh/dana_ed25519.pub")
    gone = {"team_access_members": [{"name": "dana", "ssh_keys": [key], "sudo": False, "state": "absent"}]}
    result = run_playbook("team.yml", "--limit", "ha-api1", "-e", json.dumps(gone))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert _ssh_as_dana(client, "ha-api1").rc == 255
    assert not api.user("dana").exists
    # The inventory as it is gives the access back.
    restored = run_playbook("team.yml", "--limit", "ha-api1")
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-3000:]
    assert _ssh_as_dana(client, "ha-api1").rc == 0


def test_peoples_database_roles_stay_read_only(vault, environments):
    password = vault["vault_postgresql_people_passwords"]["dw_alex"]
    env = environments[1]
    lead = leading()
    base = f"PGPASSWORD={shlex.quote(password)} psql -X -A -t -h 127.0.0.1 -U dw_alex -d {env['database']} -c "
    assert lead.run(base + shlex.quote("SELECT count(*) >= 0 FROM staging.market_data")).stdout.strip() == "t"
    insert = lead.run(
        base
        + shlex.quote(
            "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
            "VALUES ('RO', now(), 1, 1, 1, 1, 1, 1)"
        )
    )
    assert insert.rc != 0 and "permission denied" in insert.stderr, insert.stderr
    assert psql(lead, "SELECT count(*) FROM staging.market_data WHERE symbol = 'RO'", env["database"]) == "0"


def test_ansible_reached_every_managed_host_as_deploy_over_ssh(address):
    # As inventories/production connects: the controller (the network's gateway) logged in as deploy
    # with its key, and sudo gave it root.
    gateway = address["ha-db1"].rsplit(".", 1)[0] + ".1"
    for host in map(member, SERVERS):
        journal = host.check_output("journalctl --no-pager -o cat -u ssh.service")
        assert f"Accepted publickey for deploy from {gateway} " in journal, journal[-2000:]
        # Mitogen's sudo runs on a pseudo-terminal, so sudo logs a TTY= before the PWD=.
        sudo_log = host.check_output("journalctl --no-pager -o cat _COMM=sudo -n 50")
        assert re.search(r"deploy : (TTY=\S+ ; )?PWD=", sudo_log), sudo_log[-2000:]

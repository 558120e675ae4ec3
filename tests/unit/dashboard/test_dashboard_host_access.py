"""Logins and sudo from the journal (dashboard/host_access.py), on recorded journal entries:
journalctl's JSON of sshd's lines on Debian 12 ("sshd") and Debian 13 ("sshd-session",
OpenSSH 10), and of sudo 1.9's (as the VPS stand-in's journal holds them)."""

from __future__ import annotations

import json
import subprocess

import pytest

from components.host.audit import key_fingerprint, known_keys
from dashboard import alerts, host_access
from dashboard.config import ConfigError, parse_config
from dashboard.timestamps import parse_utc
from tests.unit.dashboard.test_dashboard_config import render, template_variables

OPERATOR_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJzU1bEQVo+zNLuRYVMlFJjJRP9p3cSiGgC9bpxoUkDz "
                "alice@laptop")
OPERATOR = key_fingerprint(OPERATOR_KEY)
STRANGER = "SHA256:9xJvbPIBdVdB4jHbzyqrq6Vz+rZ3V0JwZ2Rj3dQm0aQ"
KNOWN = known_keys((OPERATOR_KEY,))
NOW = parse_utc("2026-12-06T03:20:00Z")


def entry(identifier: str, message: str, at: str, cursor: str) -> dict:
    return {"SYSLOG_IDENTIFIER": identifier, "MESSAGE": message, "__CURSOR": cursor,
            "__REALTIME_TIMESTAMP": str(int(parse_utc(at) * 1_000_000)), "PRIORITY": "6"}


DEBIAN12_LOGIN = entry("sshd", f"Accepted publickey for deploy from 203.0.113.7 port 50122 ssh2: "
                       f"ED25519 {OPERATOR}", "2026-12-06T03:00:00Z", "c1")
DEBIAN13_LOGIN = entry("sshd-session", "Accepted publickey for deploy from 198.51.100.9 port "
                       f"40022 ssh2: ED25519 {STRANGER}", "2026-12-06T03:10:00Z", "c2")
SUDO = entry("sudo", "  deploy : PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/bash -c "
             "echo a ; echo b", "2026-12-06T03:11:00Z", "c3")
PAM_SESSION = entry("sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by "
                    "(uid=1000)", "2026-12-06T03:11:00Z", "c4")
REFUSED = entry("sudo", "    eve : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; "
                "COMMAND=/usr/bin/id", "2026-12-06T03:12:00Z", "c5")


def classified(raw: dict, seen: dict | None = None) -> dict:
    event = host_access.parse_entry(raw)
    assert event is not None
    return host_access.classify(event, "deploy", KNOWN, seen or {})


def test_a_login_says_who_from_where_and_when_on_both_releases():
    login = classified(DEBIAN12_LOGIN)
    assert (login["who"], login["user"], login["address"], login["at"]) == (
        "alice@laptop", "deploy", "203.0.113.7", "2026-12-06T03:00:00Z")
    assert login["severity"] == "info" and login["new_address"] is True
    assert classified(DEBIAN13_LOGIN)["address"] == "198.51.100.9"


def test_a_login_with_a_key_nobody_configured_is_critical():
    login = classified(DEBIAN13_LOGIN)
    assert login["severity"] == "critical"
    assert "not in host.provision.admin_ssh_keys" in login["problem"]
    assert login["who"] == STRANGER


def test_a_password_login_or_another_user_is_critical():
    password = entry("sshd", "Accepted password for deploy from 203.0.113.7 port 1 ssh2",
                     "2026-12-06T03:00:00Z", "c")
    assert classified(password)["severity"] == "critical"
    root = entry("sshd", f"Accepted publickey for root from 203.0.113.7 port 1 ssh2: ED25519 "
                 f"{OPERATOR}", "2026-12-06T03:00:00Z", "c")
    assert "not the deploy user" in classified(root)["problem"]


def test_the_deploy_users_sudo_is_listed_with_its_whole_command_and_raises_nothing():
    sudo = classified(SUDO)
    assert (sudo["user"], sudo["run_as"], sudo["command"]) == (
        "deploy", "root", "/usr/bin/bash -c echo a ; echo b")
    assert sudo["severity"] == "info"
    assert host_access.parse_entry(PAM_SESSION) is None


def test_a_refused_sudo_or_another_users_is_critical():
    refused = classified(REFUSED)
    assert refused["severity"] == "critical" and "user NOT in sudoers" in refused["problem"]
    other = entry("sudo", "  www-data : PWD=/ ; USER=root ; COMMAND=/bin/sh",
                  "2026-12-06T03:12:00Z", "c")
    assert "not the deploy user" in classified(other)["problem"]


class Journal:
    """journalctl's stand-in: answers each run with the entries after the cursor."""

    def __init__(self, entries: list[dict]):
        self.entries, self.commands = entries, []

    def __call__(self, command, **_):
        self.commands.append(command)
        cursor = next((c.split("=", 1)[1] for c in command if c.startswith("--after-cursor=")),
                      None)
        cursors = [e["__CURSOR"] for e in self.entries]
        after = self.entries[cursors.index(cursor) + 1:] if cursor else self.entries
        return subprocess.CompletedProcess(command, 0, "".join(json.dumps(e) + "\n"
                                                                for e in after), "")


def test_each_run_reads_from_the_last_cursor_and_keeps_what_it_saw(tmp_path):
    journal = Journal([DEBIAN12_LOGIN, SUDO, PAM_SESSION])
    first = host_access.collect(tmp_path, "deploy", KNOWN, NOW, run=journal)
    assert "--since=-24h" in journal.commands[0]
    assert {"SYSLOG_IDENTIFIER=sshd", "SYSLOG_IDENTIFIER=sshd-session",
            "SYSLOG_IDENTIFIER=sudo"} <= set(journal.commands[0])
    assert [e["kind"] for e in first["logins"] + first["sudo"]] == ["login", "sudo"]
    # The same key again from the same address: listed, not new; nothing read twice.
    journal.entries.append(dict(DEBIAN12_LOGIN, __CURSOR="c9"))
    second = host_access.collect(tmp_path, "deploy", KNOWN, NOW, run=journal)
    assert "--after-cursor=c4" in journal.commands[1]
    assert [login["new_address"] for login in second["logins"]] == [False, True]
    assert second["alerting"] == []
    assert [a for a in alerts.evaluate({"host_access": second}, NOW) if a["area"] == "access"] == []


def test_an_unexpected_login_alerts_for_a_day_with_who_where_and_when(tmp_path):
    journal = Journal([DEBIAN13_LOGIN, REFUSED])
    access = host_access.collect(tmp_path, "deploy", KNOWN, NOW, run=journal)
    raised = [a for a in alerts.evaluate({"host_access": access}, NOW) if a["area"] == "access"]
    assert [a["severity"] for a in raised] == ["critical", "critical"]
    login = next(a for a in raised if a["subject"] == STRANGER)
    assert "198.51.100.9" in login["message"] and "2026-12-06T03:10:00Z" in login["message"]
    later = NOW + host_access.ALERT_HOURS * 3600
    assert host_access.collect(tmp_path, "deploy", KNOWN, later, run=journal)["alerting"] == []


def test_a_failing_journalctl_is_an_error_not_an_empty_list(tmp_path):
    def broken(command, **_):
        return subprocess.CompletedProcess(command, 1, "", "Failed to open journal")

    with pytest.raises(RuntimeError, match="Failed to open journal"):
        host_access.collect(tmp_path, "deploy", KNOWN, NOW, run=broken)


def test_the_fingerprint_is_the_one_sshd_logs():
    # ssh-keygen -lf of OPERATOR_KEY.
    assert OPERATOR == "SHA256:mfyLTWzSV1q038HsYa0Mn4FnrFBq0Qyqb1bde7Fecf4"


def test_the_rendered_config_carries_the_keys_and_refuses_a_bad_one():
    variables = template_variables()
    variables["host_access"] = {"deploy_user": "deploy", "known_keys": KNOWN}
    config = parse_config(json.loads(render(**variables)))
    assert config.host_access.known_keys == {OPERATOR: "alice@laptop"}
    raw = json.loads(render(**variables))
    raw["host_access"]["known_keys"] = {"MD5:aa": "x"}
    with pytest.raises(ConfigError, match="host_access.known_keys"):
        parse_config(raw)
    assert parse_config(json.loads(render(**template_variables()))).host_access is None

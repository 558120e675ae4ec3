"""components/settings/provision.py (and host.py's own keys): bad host settings refused before
anything changes on the VPS, naming the key and the fix."""

from __future__ import annotations

import base64
import struct

import pytest

from tests.harness.program import TEST_HOST_KEY
from tests.harness.settings import parse, problems_of


def provision(raw) -> dict:
    return raw["host"]["provision"]


def rsa_key(bits: int) -> str:
    """An ssh-rsa public key line with a modulus of `bits` (never a usable key)."""
    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data
    blob = string(b"ssh-rsa") + string(b"\x01\x00\x01") + string(b"\x00" + b"\xc3" * (bits // 8))
    return f"ssh-rsa {base64.b64encode(blob).decode()} old@laptop"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda raw: provision(raw).update(admin_ssh_keys=["ssh-ed25519 not-base64!"]),
     "admin_ssh_keys[0]: the key's base64 part is damaged"),
    (lambda raw: provision(raw).update(admin_ssh_keys=["ssh-dss AAAAB3NzaC1kc3M="]),
     "is not an OpenSSH public key of a supported type"),
    (lambda raw: provision(raw).update(admin_ssh_keys=[rsa_key(2048)]),
     "an RSA key of 2048 bits is too short"),
    (lambda raw: provision(raw).update(
        admin_ssh_keys=["ssh-ed25519 " + TEST_HOST_KEY.split()[1][:-8]]),
     "admin_ssh_keys[0]: the key's"),
    (lambda raw: provision(raw).update(admin_ssh_keys="ssh-ed25519 AAAA"),
     "must be a list of public key lines"),
    (lambda raw: raw["host"]["ssh"].update(host_key="AAAAC3NzaC1lZDI1NTE5"),
     "host.ssh.host_key='AAAAC3NzaC1lZDI1NTE5'… is not an OpenSSH public key"),
    (lambda raw: raw["host"]["ssh"].update(port=443),
     "host.ssh.port=443 clashes with nginx"),
    (lambda raw: raw["host"].update(swap_mb=8192),
     "host.swap_mb=8192 would take over a quarter of the 20 GB disk"),
    (lambda raw: provision(raw).update(fail2ban={"ban_time_s": 0}),
     "fail2ban.ban_time_s=0 must be greater than 0 (a ban time of 0 would ban nobody"),
    (lambda raw: provision(raw).update(fail2ban={"bantime": 60}),
     "aiia:host.provision.fail2ban.bantime is not a setting"),
    (lambda raw: provision(raw).update(docker_package="docker.io; rm -rf /"),
     "docker_package='docker.io; rm -rf /' is not a Debian package name"),
    (lambda raw: provision(raw).update(log_rotate_mb=0),
     "log_rotate_mb=0 must be greater than 0"),
    (lambda raw: provision(raw).update(fail2ban={"ignore_addresses": ["office"]}),
     "ignore_addresses[0]='office' is not an IP address or CIDR range"),
    (lambda raw: provision(raw).update(journal_max_mb=0),
     "journal_max_mb=0 must be greater than 0"),
    (lambda raw: provision(raw).update(swap_file="swapfile"),
     "swap_file='swapfile' must be an absolute path"),
    (lambda raw: provision(raw).update(swap_file="/var/../etc/passwd"),
     "swap_file='/var/../etc/passwd' must be an absolute path of plain names"),
    (lambda raw: provision(raw).update(swap_file="/run/swap"),
     "swap_file='/run/swap' must be an absolute path"),
])
def test_bad_host_settings_are_refused_naming_the_key_and_the_fix(change, expected):
    assert expected in problems_of(change)


@pytest.mark.parametrize(("value", "expected"), [
    ("4:30", "host.provision.automatic_reboot='4:30' must be a time of day HH:MM"),
    ("24:00", "automatic_reboot='24:00' must be a time of day HH:MM"),
    ("sometimes", "or \"off\" to leave reboots to an operator"),
    (270, "automatic_reboot=270 is a number: quote the time"),  # YAML's unquoted 04:30
    (True, "automatic_reboot=True must be text"),
    # Within the hour after the default backup (03:30) or restore drill (05:10).
    ("03:45", "automatic_reboot='03:45' is within the hour after platform.backup.time 03:30"),
    ("05:10", "is within the hour after platform.backup.drill_time 05:10"),
])
def test_a_bad_automatic_reboot_time_is_refused_naming_the_key_and_the_fix(value, expected):
    assert expected in problems_of(lambda raw: provision(raw).update(automatic_reboot=value))


@pytest.mark.parametrize(("value", "taken"), [
    ("04:30", "04:30"), ("off", "off"), (False, "off"), ("23:59", "23:59"), ("03:29", "03:29")])
def test_a_reboot_time_or_off_is_accepted(value, taken):
    settings = parse("prod", lambda raw: provision(raw).update(automatic_reboot=value))
    assert settings.host.provision.automatic_reboot == taken


@pytest.mark.parametrize(("change", "expected"), [
    (dict(integrity_check_time="2:30"),
     "host.provision.integrity_check_time='2:30' must be a time of day HH:MM"),
    (dict(integrity_check_time=150), "integrity_check_time=150 is a number: quote the time"),
    (dict(integrity_check_memory_mb=16),
     "integrity_check_memory_mb=16 is below 32: AIDE would be killed"),
    # Within the hour after the default backup (03:30): two transient jobs at once.
    (dict(integrity_check_time="04:00"),
     "integrity_check_time='04:00' is within the hour after platform.backup.time 03:30"),
])
def test_a_bad_integrity_check_setting_is_refused_naming_the_key_and_the_fix(change, expected):
    assert expected in problems_of(lambda raw: provision(raw).update(change))


def test_the_integrity_check_defaults_to_the_night_before_the_backup():
    settings = parse("prod")
    assert settings.host.provision.integrity_check_time == "02:30"
    (share,) = [share for share in settings.budget.transient
                if share.service == "integrity check (AIDE)"]
    assert (share.memory_mb, share.config_key) == (
        64, "aiia:host.provision.integrity_check_memory_mb")
    assert not [share for share in parse("local").budget.transient
                if share.service == "integrity check (AIDE)"]  # no host provisioned

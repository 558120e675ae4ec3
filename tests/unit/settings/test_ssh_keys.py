"""One rule for every SSH public key of the config (components/settings/provision.py,
ssh_key_problem): the operators' keys, the VPS's host key and the off-host backup target's
host key are refused alike when they do not decode to a key of their type or are RSA keys
under 3072 bits; a host key is taken as ssh-keyscan prints it, host name first, and the
off-host target's problems say to paste that line."""

from __future__ import annotations

import base64
import copy
import struct

import pytest

from components.settings import ConfigError, parse_settings
from components.settings.provision import ssh_key_problem
from tests.harness.program import made_up_secrets, stack_config

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
OFF_HOST_KEY = "aiia:platform.backup.off_host.host_key"


def wire(*fields: bytes) -> str:
    """An SSH wire-format public key blob (RFC 4253 §6.6), base64."""
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


def rsa_key(bits: int) -> str:
    modulus = b"\x00" + b"\xff" * (bits // 8)
    return "ssh-rsa " + wire(b"ssh-rsa", b"\x01\x00\x01", modulus)


ECDSA = "ecdsa-sha2-nistp256 " + wire(b"ecdsa-sha2-nistp256", b"nistp256", b"\x04" + b"\x07" * 64)
# Each of these passed the regex the off-host key had before (type, space, base64 letters).
REGEX_VALID_BAD_KEYS = {
    "truncated": ED25519[:-4],  # copied incompletely: the last field is cut short
    "no key data": "ssh-ed25519 AAAA",
    "another type's data": "ssh-rsa " + ED25519.split()[1],
    "short RSA": rsa_key(1024),
    "2048-bit RSA": rsa_key(2048),
}


def parse_with_off_host_key(host_key):
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"].setdefault("backup", {})["off_host"] = {
        "host": "backup.example.net", "path": "/srv/backups", "host_key": host_key}
    raw = {key.split(":", 1)[1]: value for key, value in config.items()}
    secrets = {key.split(":", 1)[1]: value for key, value in made_up_secrets(config).items()}
    return parse_settings("prod", raw, secrets.get)


def off_host_problems(host_key) -> list[str]:
    try:
        parse_with_off_host_key(host_key)
    except ConfigError as error:
        return [problem for problem in error.problems if problem.startswith(OFF_HOST_KEY)]
    return []


@pytest.mark.parametrize("name", sorted(REGEX_VALID_BAD_KEYS))
def test_an_off_host_key_that_does_not_decode_or_is_weak_is_refused(name):
    found = off_host_problems(REGEX_VALID_BAD_KEYS[name])
    assert len(found) == 1, found
    assert ssh_key_problem(REGEX_VALID_BAD_KEYS[name], "any key") is not None


def test_the_off_host_problems_say_how_to_give_a_host_key():
    damaged, = off_host_problems(ED25519[:-4])
    assert "base64 part is damaged" in damaged
    assert "paste the line `ssh-keyscan -t ed25519 <host>` prints" in damaged
    assert off_host_problems("backup.example.net " + ED25519) == []
    weak, = off_host_problems(rsa_key(1024))
    assert "an RSA key of 1024 bits is too short (at least 3072)" in weak
    assert "ssh-keyscan -t ed25519 backup.example.net" in weak


@pytest.mark.parametrize("host_key", [ED25519, ED25519 + " root@backup", ECDSA, rsa_key(3072),
                                      rsa_key(4096), f"  {ED25519}\n"])
def test_a_whole_host_key_is_accepted(host_key):
    target = parse_with_off_host_key(host_key).platform.backup.off_host
    assert target.host_key == host_key


@pytest.mark.parametrize("host_key", [*REGEX_VALID_BAD_KEYS.values(), ED25519, ECDSA,
                                      rsa_key(3072), "AAAA", "backup.example.net " + ED25519,
                                      f"{ED25519}\n{ED25519}", "ssh-dss AAAAB3NzaC1kc3M="])
def test_the_off_host_key_and_the_vps_host_key_follow_one_rule(host_key):
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:host"]["ssh"]["host_key"] = host_key
    raw = {key.split(":", 1)[1]: value for key, value in config.items()}
    secrets = {key.split(":", 1)[1]: value for key, value in made_up_secrets(config).items()}
    try:
        parse_settings("prod", raw, secrets.get)
        vps_refused = False
    except ConfigError as error:
        vps_refused = any(p.startswith("aiia:host.ssh.host_key") for p in error.problems)
    assert bool(off_host_problems(host_key)) == vps_refused

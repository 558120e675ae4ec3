"""Settings of the host itself (`aiia:host.provision`): what the host component
(components/host/provision.py) makes of a fresh Debian 13 or 12 VPS. Pure and typed, like
settings/host.py, which parses them with the rest of `aiia:host` and reports every bad value
at once.

Defaults fit a 512 MB, 20 GB VPS on the internet from minute one: one SSH port, keys only,
fail2ban on SSH and on nginx's log, file logs rotated at 50 MB, security updates unattended.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.settings.checks import NAMESPACE, PLAIN_PATH_RE, Problems, typed_fields

# OpenSSH public key types an operator's key (or a host key: the VPS's, the off-host backup
# target's) may be; DSA is gone from OpenSSH 10 (Debian 13) and refused by 9.x's defaults, the
# RSA-SHA1 only "ssh-rsa" signature is refused by both, and RSA keys shorter than 3072 bits are
# refused here.
SSH_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                 "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-rsa")
MIN_RSA_BITS = 3072
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
PROVISION_KEY = f"{NAMESPACE}:host.provision"


@dataclass(frozen=True)
class Fail2banSettings:
    ban_time_s: int = 3600
    find_time_s: int = 600
    ssh_max_retry: int = 5
    # 401s on the status domain (a password guessed) and 429s/400s anywhere (a client that
    # ignores the rate limit or sends garbage), counted in nginx's JSON access log.
    status_auth_max_retry: int = 10
    abuse_max_retry: int = 60
    # Addresses never banned (the operators' own, a CI runner's): addresses or CIDR ranges.
    ignore_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProvisionSettings:
    """`aiia:host.provision`: only on an ssh host; `local` provisions nothing."""

    # The user the program connects as (host.ssh.user): created if missing, in the docker
    # group, with passwordless sudo (the program runs root scripts through `sudo -n`).
    admin_ssh_keys: tuple[str, ...] = ()
    docker_package: str = "docker.io"  # Debian's; or docker-ce from Docker's own repository
    log_rotate_mb: int = 50
    log_rotate_keep: int = 5
    journal_max_mb: int = 200  # systemd's journal on disk (journald's SystemMaxUse)
    swappiness: int = 10
    # Where the swap file of host.swap_mb lives: on a filesystem that can hold one (ext4,
    # xfs; not a btrfs subvolume with copy-on-write, nor overlayfs).
    swap_file: str = "/swapfile"
    unattended_upgrades: bool = True
    # When a security update needs a reboot (a kernel, /run/reboot-required), the host reboots
    # at this time of day, on the host's clock (UTC on a VPS), the next time it passes; "off"
    # leaves it to an operator, told by the dashboard's host tile. On by default: until an
    # alerts channel exists nobody is told, and a kernel fix that is installed but never
    # booted protects nothing (review M9); one or two minutes of downtime a month, an hour
    # after the default 03:30 backup. unattended-upgrades' Automatic-Reboot-Time.
    automatic_reboot: str = "04:30"
    # The nightly file-integrity check (components/host/integrity.py): when (the host's
    # clock; an hour before the default backup, so the two never overlap in memory) and its
    # memory cap, counted in the budget as a transient job. AIDE's peak grows with the files
    # it watches: 17-19 MB RSS for 7,000-7,700 (a bare Debian 13, 12), 28 MB for 9,691 on
    # the provisioned Debian 13 stand-in (tests/e2e/test_vps.py prints it); the cap leaves
    # room for a VPS's kernel modules.
    integrity_check_time: str = "02:30"
    integrity_check_memory_mb: int = 64
    fail2ban: Fail2banSettings = field(default_factory=Fail2banSettings)


# What a problem with an operator's key says to do: how to give a key, and what to use
# instead of a short RSA key.
KEY_LINE_FIX = ("use one line as in ~/.ssh/id_ed25519.pub (`ssh-ed25519 AAAA… comment`); make "
                "one with `ssh-keygen -t ed25519`")
SHORT_RSA_FIX = "use an ed25519 key: `ssh-keygen -t ed25519`"


PRIVATE_KEY_RE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")


def private_key_problem(text: Any, key: str) -> str | None:
    """A private key pasted where a public one belongs: refused, and the user told that the
    key is no longer private."""
    if not isinstance(text, str) or not PRIVATE_KEY_RE.search(text):
        return None
    return (f"{key} holds a PRIVATE key: only a public key belongs here. Treat the private "
            "key as leaked (it is in the stack file, and in git history once committed): make "
            "a new key pair, remove the old public key wherever it is authorized, and give the "
            "new public half (the .pub file, or gpg --armor --export for a GPG key)")


def host_key_line(text: Any) -> Any:
    """A host key as `type base64`: the line `ssh-keyscan` prints starts with the host name
    (`host ssh-ed25519 AAAA…`), which is dropped; anything else is returned as it is."""
    if not isinstance(text, str):
        return text
    lines = [line for line in text.strip().splitlines() if not line.startswith("#")]
    parts = lines[0].split() if len(lines) == 1 else []
    if len(parts) >= 3 and parts[0] not in SSH_KEY_TYPES and parts[1] in SSH_KEY_TYPES:
        return f"{parts[1]} {parts[2]}"
    return text


def ssh_key_problem(text: Any, key: str, fix: str = KEY_LINE_FIX,
                    short_rsa_fix: str = SHORT_RSA_FIX) -> str | None:
    """Why `text` is not one OpenSSH public key line (`type base64 [comment]`) of a supported
    type, decoding to that type's key (an RSA one of MIN_RSA_BITS at least), or None. The
    one rule for every SSH public key in the config; `fix` and `short_rsa_fix` say what to
    do about a bad one where the key comes from elsewhere (a host key: ssh-keyscan)."""
    private = private_key_problem(text, key)
    if private:
        return private
    if not isinstance(text, str) or "\n" in text.strip():
        return f"{key} must be one public key line; {fix}"
    parts = text.split()
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        return (f"{key}={text[:40]!r}… is not an OpenSSH public key of a supported type "
                f"({', '.join(SSH_KEY_TYPES)}); {fix}")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        fields = _ssh_strings(blob)
    except (binascii.Error, ValueError):
        return f"{key}: the key's base64 part is damaged (copied incompletely?); {fix}"
    if not fields or fields[0].decode("ascii", "replace") != parts[0]:
        return f"{key}: the key's data does not match its type {parts[0]}; {fix}"
    if parts[0] == "ssh-rsa":
        modulus = fields[2] if len(fields) > 2 else b""
        bits = (len(modulus.lstrip(b"\0")) * 8)
        if bits < MIN_RSA_BITS:
            return (f"{key}: an RSA key of {bits} bits is too short (at least {MIN_RSA_BITS}); "
                    f"{short_rsa_fix}")
    return None


def _ssh_strings(blob: bytes) -> list[bytes]:
    """The length-prefixed fields of an SSH wire-format public key (RFC 4253 §6.6)."""
    fields, position = [], 0
    while position < len(blob):
        if position + 4 > len(blob):
            raise ValueError("truncated")
        (length,) = struct.unpack(">I", blob[position:position + 4])
        position += 4
        if position + length > len(blob):
            raise ValueError("truncated")
        fields.append(blob[position:position + length])
        position += length
    return fields


def parse_provision(raw: Any, problems: Problems) -> ProvisionSettings:
    """`aiia:host.provision` from `raw`; every problem goes to `problems`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.add(f"{PROVISION_KEY} must be an object, got {raw!r}; see README.md, "
                     "\"The host\"")
        return ProvisionSettings()
    if raw.get("automatic_reboot") is False:  # YAML's `false`: what "off" says
        raw = {**raw, "automatic_reboot": "off"}
    values = typed_fields(ProvisionSettings, raw, "host.provision", problems)
    fail2ban = _parse_fail2ban(values.pop("fail2ban", None), problems)
    keys = _parse_admin_keys(values.pop("admin_ssh_keys", ()), problems)
    settings = ProvisionSettings(admin_ssh_keys=keys, fail2ban=fail2ban, **values)
    _check_provision(settings, problems)
    _check_fail2ban(fail2ban, problems)
    return settings


def _parse_fail2ban(raw: Any, problems: Problems) -> Fail2banSettings:
    key = f"{PROVISION_KEY}.fail2ban"
    raw = raw or {}
    if not isinstance(raw, Mapping):
        problems.add(f"{key} must be an object, got {raw!r}")
        raw = {}
    values = typed_fields(Fail2banSettings, raw, "host.provision.fail2ban", problems)
    ignored = values.pop("ignore_addresses", ())
    if isinstance(ignored, str) or not isinstance(ignored, list | tuple):
        problems.add(f"{key}.ignore_addresses must be a list of addresses, got {ignored!r}")
        ignored = ()
    for index, address in enumerate(ignored):
        try:
            ipaddress.ip_network(str(address), strict=False)
        except ValueError:
            problems.add(f"{key}.ignore_addresses[{index}]={address!r} is not an IP address or "
                         "CIDR range (e.g. 203.0.113.7 or 203.0.113.0/24)")
    return Fail2banSettings(ignore_addresses=tuple(str(a) for a in ignored), **values)


def _parse_admin_keys(keys: Any, problems: Problems) -> tuple[str, ...]:
    """The operators' public key lines, each checked."""
    key = f"{PROVISION_KEY}.admin_ssh_keys"
    if isinstance(keys, str) or not isinstance(keys, list | tuple):
        problems.add(f"{key} must be a list of public key lines, got {keys!r}")
        keys = ()
    for index, line in enumerate(keys):
        problem = ssh_key_problem(line, f"{key}[{index}]")
        if problem:
            problems.add(problem)
    return tuple(str(k).strip() for k in keys)


def _check_provision(settings: ProvisionSettings, problems: Problems) -> None:
    """The provisioned host's own settings: keys to log in, packages, logs, swap."""
    key = PROVISION_KEY
    if not settings.admin_ssh_keys:
        problems.add(f"{key}.admin_ssh_keys is empty: password logins are switched off, so "
                     "without a key nobody could log in; list the operators' public keys "
                     "(~/.ssh/id_ed25519.pub)")
    if not PACKAGE_RE.match(str(settings.docker_package)):
        problems.add(f"{key}.docker_package={settings.docker_package!r} is not a Debian package "
                     "name (docker.io, or docker-ce with Docker's repository configured)")
    for name in ("log_rotate_mb", "log_rotate_keep", "journal_max_mb"):
        if getattr(settings, name) <= 0:
            problems.add(f"{key}.{name}={getattr(settings, name)} must be greater than 0")
    if not 0 <= settings.swappiness <= 100:
        problems.add(f"{key}.swappiness={settings.swappiness} must be between 0 and 100")
    _check_automatic_reboot(settings.automatic_reboot, problems)
    _check_integrity_check(settings, problems)
    if not _is_disk_path(str(settings.swap_file)):
        problems.add(f"{key}.swap_file={settings.swap_file!r} must be an absolute path of plain "
                     "names on a disk filesystem (letters, digits, . _ -), e.g. /swapfile")


REBOOT_TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def _check_automatic_reboot(value: Any, problems: Problems) -> None:
    key = f"{PROVISION_KEY}.automatic_reboot"
    if isinstance(value, int):  # YAML 1.1 reads 04:30 as 270 (base 60)
        problems.add(f"{key}={value} is a number: quote the time in the stack file, e.g. "
                     "automatic_reboot: \"04:30\" (or \"off\")")
    elif value != "off" and not REBOOT_TIME_RE.match(str(value)):
        problems.add(f"{key}={value!r} must be a time of day HH:MM on the host's clock (UTC "
                     "on a VPS), e.g. \"04:30\", or \"off\" to leave reboots to an operator")


# AIDE's peak on a bare Debian (7,000 files) is 14-19 MB; below this it would be killed.
INTEGRITY_CHECK_MIN_MB = 32


def _check_integrity_check(settings: ProvisionSettings, problems: Problems) -> None:
    key = f"{PROVISION_KEY}.integrity_check_time"
    value = settings.integrity_check_time
    if isinstance(value, int):  # YAML 1.1 reads 02:30 as 150 (base 60)
        problems.add(f"{key}={value} is a number: quote the time in the stack file, e.g. "
                     "integrity_check_time: \"02:30\"")
    elif not REBOOT_TIME_RE.match(str(value)):
        problems.add(f"{key}={value!r} must be a time of day HH:MM on the host's clock (UTC "
                     "on a VPS), e.g. \"02:30\"")
    memory = settings.integrity_check_memory_mb
    if memory < INTEGRITY_CHECK_MIN_MB:
        problems.add(f"{PROVISION_KEY}.integrity_check_memory_mb={memory} is below "
                     f"{INTEGRITY_CHECK_MIN_MB}: AIDE would be killed before it finished "
                     f"reading a bare Debian; raise it (the default is "
                     f"{ProvisionSettings.integrity_check_memory_mb})")


def _is_disk_path(path: str) -> bool:
    """An absolute path of plain names, outside the kernel's and the runtime's filesystems."""
    return (bool(PLAIN_PATH_RE.match(path)) and "/../" not in f"{path}/"
            and not path.startswith(("/proc/", "/sys/", "/dev/", "/run/")))


def _check_fail2ban(fail2ban: Fail2banSettings, problems: Problems) -> None:
    key = f"{PROVISION_KEY}.fail2ban"
    for name in ("ban_time_s", "find_time_s", "ssh_max_retry", "status_auth_max_retry",
                 "abuse_max_retry"):
        value = getattr(fail2ban, name)
        if value <= 0:
            problems.add(f"{key}.{name}={value} must be greater than 0 (a ban time of 0 would "
                         "ban nobody; to stop banning, raise the retries instead)"
                         if name == "ban_time_s"
                         else f"{key}.{name}={value} must be greater than 0")

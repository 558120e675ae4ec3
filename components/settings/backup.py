"""`aiia:platform.backup`: the daily encrypted backup, its retention, its off-host copy and
the monthly restore drill (components/platform/backup.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.settings.checks import (
    NAMESPACE,
    Problems,
    check_host_address,
    check_plain_path,
    typed_fields,
)
from components.settings.gpg_keys import KeyProblem, PublicKey, inspect_public_key
from components.settings.pitr import PitrSettings, parse_pitr
from components.settings.provision import (
    USER_RE,
    host_key_line,
    private_key_problem,
    ssh_key_problem,
)

TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
# What backups may take of the disk at most: the rest holds the system, the images (each
# release's kept for rollbacks), PostgreSQL's data and WAL, and the logs.
BACKUP_DISK_SHARE = 0.4
BACKUP_KEY = f"{NAMESPACE}:platform.backup"


@dataclass(frozen=True)
class OffHostSettings:
    """Where each verified backup is copied over SSH (rsync), its host key pinned."""

    host: str
    path: str
    host_key: str  # the target's public host key, e.g. "ssh-ed25519 AAAA…" (ssh-keyscan)
    user: str = "aiia-backup"
    port: int = 22


@dataclass(frozen=True)
class BackupSettings:
    """The daily encrypted backup and the monthly restore drill (components/platform/backup.py)."""

    time: str = "03:30"  # UTC, daily, by the host's cron
    # The operators' GPG public keys (armored text, or the path of a file holding one on the
    # machine that runs `pulumi up`); every backup is encrypted to each of them and to the
    # host's drill key. Checked at preview: malformed or expired keys are refused.
    recipients: tuple = ()
    keep_daily: int = 7  # the newest verified backup of each of the last N days
    keep_monthly: int = 3  # and the first verified backup of each of the last M months
    # What backups may take of host.disk_gb; a run that would exceed it prunes old backups
    # (never the newest verified one) or refuses to start.
    disk_budget_mb: int = 6144
    drill_day: int = 1  # the restore drill's day of the month
    drill_time: str = "05:10"  # UTC, after that day's backup
    # The transient container that dumps, encrypts and verifies (and restores in the drill):
    # pg_dump/pg_restore and gpg stream, so their memory does not grow with the database.
    memory_mb: int = 64
    off_host: OffHostSettings | None = None
    keys: tuple[PublicKey, ...] = ()  # the recipients, read and checked
    # Point-in-time recovery (components/settings/pitr.py): on unless `pitr: false`.
    pitr: PitrSettings = PitrSettings()

    @property
    def hour_minute(self) -> tuple[int, int]:
        hour, minute = self.time.split(":")
        return int(hour), int(minute)


def _parse_off_host(value: Any, problems: Problems) -> OffHostSettings | None:
    key = f"{NAMESPACE}:platform.backup.off_host"
    if value is None:
        return None
    values = typed_fields(OffHostSettings, value if isinstance(value, Mapping) else {},
                          "platform.backup.off_host", problems)
    missing = [name for name in ("host", "path") if not values.get(name)]
    for name in missing:
        problems.add(f"{key}.{name} is missing")
    if not values.get("host_key"):
        problems.add(f"{key}.host_key is missing: a copy to a host whose key is not pinned can "
                     "be taken by anyone who answers at its address; set it to the target's "
                     "public host key (ssh-keyscan -t ed25519 <host>, checked out of band), "
                     "e.g. 'ssh-ed25519 AAAA…'")
        return None
    if missing:
        return None
    values["host_key"] = host_key_line(values["host_key"])
    off_host = OffHostSettings(**values)
    # The same rule as every SSH key of the config (provision.py), said for a host key.
    problem = ssh_key_problem(
        off_host.host_key, f"{key}.host_key",
        fix="paste the line `ssh-keyscan -t ed25519 <host>` prints, e.g. "
            "'backup.example.com ssh-ed25519 AAAA…' (or just 'ssh-ed25519 AAAA…')",
        short_rsa_fix=f"pin the target's ed25519 host key instead (ssh-keyscan -t ed25519 "
                      f"{off_host.host})")
    if problem:
        problems.add(problem)
    check_plain_path(off_host.path, f"{key}.path", problems)
    check_host_address(off_host.host, f"{key}.host", problems)
    if not USER_RE.match(str(off_host.user)):
        problems.add(f"{key}.user={off_host.user!r} is not a valid Linux user name")
    if not 1 <= off_host.port <= 65535:
        problems.add(f"{key}.port={off_host.port} must be between 1 and 65535")
    return off_host


def parse_backup(platform_raw: Mapping[str, Any], problems: Problems) -> BackupSettings:
    raw = platform_raw.get("backup") or {}
    if not isinstance(raw, Mapping):
        problems.add(f"{BACKUP_KEY} must be an object")
        raw = {}
    values = typed_fields(BackupSettings, raw, "platform.backup", problems,
                          also_known=("pitr",))
    values.pop("keys", None)
    pitr = parse_pitr(raw.get("pitr"), problems, TIME_RE)
    off_host = _parse_off_host(values.pop("off_host", None), problems)
    recipients = _parse_recipients(values.pop("recipients", None), problems)
    keys = _read_keys(recipients, problems)
    backup = BackupSettings(recipients=recipients, keys=keys, off_host=off_host, pitr=pitr,
                            **values)
    _check_times(backup, problems)
    _check_limits(backup, problems)
    return backup


def _parse_recipients(value: Any, problems: Problems) -> tuple:
    """The recipients as a tuple: one key given alone counts as a list of one."""
    recipients = value or ()
    if isinstance(recipients, str):
        recipients = (recipients,)
    if not isinstance(recipients, list | tuple):
        problems.add(f"{BACKUP_KEY}.recipients must be a list of GPG public keys (armored "
                     "text or file paths)")
        recipients = ()
    return tuple(recipients)


def _read_keys(recipients: tuple, problems: Problems) -> tuple[PublicKey, ...]:
    """Each recipient's key, read by GnuPG; a key that cannot be used is reported."""
    keys = []
    for index, value in enumerate(recipients):
        private = private_key_problem(value, f"{BACKUP_KEY}.recipients[{index}]")
        if private:
            problems.add(private)
            continue
        try:
            keys.append(inspect_public_key(str(value)))
        except KeyProblem as problem:
            shown = "<armored key>" if "-----BEGIN" in str(value) else repr(value)
            problems.add(f"{BACKUP_KEY}.recipients[{index}]={shown} {problem}")
    return tuple(keys)


def _check_times(backup: BackupSettings, problems: Problems) -> None:
    """The backup's and the drill's time of day: HH:MM, UTC."""
    for name in ("time", "drill_time"):
        value = getattr(backup, name)
        if isinstance(value, int):  # YAML 1.1 reads 03:30 as 210 (base 60)
            problems.add(f"{BACKUP_KEY}.{name}={value} is a number: quote the time in the "
                         "stack file, e.g. time: \"03:30\"")
        elif not TIME_RE.match(str(value)):
            problems.add(f"{BACKUP_KEY}.{name}={value!r} must be a UTC time HH:MM, e.g. 03:30")


def _check_limits(backup: BackupSettings, problems: Problems) -> None:
    """Retention, the drill's day, the container's memory and the disk budget in range."""
    for name, low, high in (("keep_daily", 1, 60), ("keep_monthly", 1, 24),
                            ("drill_day", 1, 28), ("memory_mb", 32, 1024)):
        value = getattr(backup, name)
        if not low <= value <= high:
            reason = (" (0 would keep no backup at all: the newest verified one is always "
                      "kept, and retention counts it)" if value == 0 and name.startswith("keep")
                      else "")
            hint = " (28 at most: every month has that day)" if name == "drill_day" else ""
            problems.add(f"{BACKUP_KEY}.{name}={value} must be between {low} and {high}"
                         f"{reason}{hint}")
    if backup.disk_budget_mb <= 0:
        problems.add(f"{BACKUP_KEY}.disk_budget_mb={backup.disk_budget_mb} must be greater "
                     "than 0")

"""`aiia:platform.backup.pitr`: point-in-time recovery of the shared PostgreSQL cluster —
continuous WAL archiving, periodic base backups, the window they keep and what it takes of
the disk (components/platform/pitr.py, docs/pitr.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.settings.checks import NAMESPACE, Problems, typed_fields

PITR_KEY = f"{NAMESPACE}:platform.backup.pitr"
# What the archive (base backups and WAL) may take of host.disk_gb, beside the daily
# backups' share (backup.BACKUP_DISK_SHARE): the two together leave 30 % to the system, the
# images, PostgreSQL's own data and WAL, and the logs.
PITR_DISK_SHARE = 0.3
# Time the archive_timeout leaves of the RPO for the rest of the way off the host: the
# host's shipper runs every 15 s (templates/cron/pitr.cron.j2) and a segment takes a few
# seconds to encrypt and send.
SHIP_MARGIN_SECONDS = 20


@dataclass(frozen=True)
class PitrSettings:
    """Continuous archiving and the window a restore can reach (docs/pitr.md)."""

    enabled: bool = True
    window_days: int = 7  # a restore reaches any second of the last N days
    # The most a lost host loses: PostgreSQL switches to a new WAL segment at least every
    # rpo_seconds - 20 s, and the shipper sends each within 20 s after.
    rpo_seconds: int = 60
    base_every_days: int = 1  # a base backup at base_time every N days (restore starts there)
    base_time: str = "02:40"  # UTC; before the daily backup's 03:30
    drill_day: int = 15  # the monthly PITR drill: its day and time (UTC)
    drill_time: str = "05:40"
    # The disk budget's stated load: the database's size (each base backup counts it whole,
    # before compression) and the WAL it writes per day (counted before compression).
    database_mb: int = 512
    wal_mb_per_day: int = 256
    # Free space the archiver always leaves on the disk; below it, PostgreSQL keeps the WAL
    # (up to wal_keep_cap_mb) and the dashboard alerts; past that cap a segment is dropped,
    # recorded as a gap, and the next base backup starts a new chain (never a full disk).
    reserve_mb: int = 1024
    wal_keep_cap_mb: int = 512
    # The scratch PostgreSQL a restore or a drill replays into.
    restore_memory_mb: int = 128

    @property
    def archive_timeout_seconds(self) -> int:
        return max(self.rpo_seconds - SHIP_MARGIN_SECONDS, 10)

    @property
    def base_backups_kept(self) -> int:
        """Every base backup within the window, and the one before it (the window's start
        replays from it)."""
        return -(-self.window_days // self.base_every_days) + 1

    @property
    def disk_mb(self) -> int:
        """What the archive needs at the stated load: base backups and WAL of the window
        (plus the base interval: WAL is kept from the oldest base backup kept)."""
        wal_days = self.window_days + self.base_every_days
        return self.base_backups_kept * self.database_mb + wal_days * self.wal_mb_per_day


def parse_pitr(raw: Any, problems: Problems, time_re: Any) -> PitrSettings:
    """`pitr: false` turns it off; an object sets its fields; absent: the defaults (on)."""
    if raw is None:
        return PitrSettings()
    if isinstance(raw, bool):
        return PitrSettings(enabled=raw)
    if not isinstance(raw, Mapping):
        problems.add(f"{PITR_KEY} must be an object (e.g. window_days: 7) or false, got "
                     f"{raw!r}")
        return PitrSettings()
    pitr = PitrSettings(**typed_fields(PitrSettings, raw, "platform.backup.pitr", problems))
    for name in ("base_time", "drill_time"):
        value = getattr(pitr, name)
        if isinstance(value, int):  # YAML 1.1 reads 02:40 as 160 (base 60)
            problems.add(f"{PITR_KEY}.{name}={value} is a number: quote the time in the stack "
                         f"file, e.g. {name}: \"02:40\"")
        elif not time_re.match(str(value)):
            problems.add(f"{PITR_KEY}.{name}={value!r} must be a UTC time HH:MM, e.g. 02:40")
    for name, low, high in (("window_days", 1, 35), ("rpo_seconds", 30, 3600),
                            ("base_every_days", 1, 7), ("drill_day", 1, 28),
                            ("database_mb", 1, 1048576), ("wal_mb_per_day", 1, 1048576),
                            ("reserve_mb", 256, 1048576), ("wal_keep_cap_mb", 64, 65536),
                            ("restore_memory_mb", 96, 4096)):
        value = getattr(pitr, name)
        if not low <= value <= high:
            hint = {"rpo_seconds": " (below 30 s every idle minute would still cost a "
                                   "segment switch; above an hour use the daily backup)",
                    "base_every_days": " (a restore replays the WAL since the last base "
                                       "backup: more than a week of it is slow)",
                    "drill_day": " (28 at most: every month has that day)"}.get(name, "")
            problems.add(f"{PITR_KEY}.{name}={value} must be between {low} and {high}{hint}")
    if pitr.base_every_days > pitr.window_days:
        problems.add(f"{PITR_KEY}.base_every_days={pitr.base_every_days} is longer than "
                     f"window_days={pitr.window_days}: lower base_every_days")
    return pitr


def check_pitr_disk(pitr: PitrSettings, disk_gb: int, problems: Problems) -> None:
    """A window that cannot fit the host's disk is refused, naming the numbers."""
    if not pitr.enabled or disk_gb <= 0:
        return
    limit = int(disk_gb * 1024 * PITR_DISK_SHARE)
    if pitr.disk_mb > limit:
        problems.add(
            f"{PITR_KEY}: a {pitr.window_days}-day window needs about {pitr.disk_mb} MB "
            f"({pitr.base_backups_kept} base backups of database_mb={pitr.database_mb} and "
            f"{pitr.window_days + pitr.base_every_days} days of WAL at "
            f"wal_mb_per_day={pitr.wal_mb_per_day}), more than the "
            f"{int(PITR_DISK_SHARE * 100)} % of {NAMESPACE}:host.disk_gb={disk_gb} it may "
            f"take ({limit} MB); lower window_days, raise base_every_days, or raise "
            "host.disk_gb")

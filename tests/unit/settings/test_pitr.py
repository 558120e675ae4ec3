"""components/settings/pitr.py: platform.backup.pitr — on by default, its window checked
against the host's disk at preview with the numbers, every bad value refused naming the key
and the fix."""

import pytest

from components.settings.pitr import PitrSettings
from tests.harness.settings import parse, problems, with_backup


def pitr_of(**values):
    return parse("prod", with_backup(pitr=values)).platform.backup.pitr


def test_on_by_default_with_a_week_and_a_minute():
    pitr = parse("prod", with_backup()).platform.backup.pitr
    assert pitr == PitrSettings()
    assert pitr.enabled and pitr.window_days == 7 and pitr.rpo_seconds == 60
    # The shipper's 20 s are left of the minute: a segment at least every 40 s.
    assert pitr.archive_timeout_seconds == 40


def test_false_turns_it_off():
    assert not parse("prod", with_backup(pitr=False)).platform.backup.pitr.enabled


def test_the_disk_need_counts_base_backups_and_wal_of_the_window():
    pitr = pitr_of(window_days=7, base_every_days=1, database_mb=512, wal_mb_per_day=256)
    assert pitr.base_backups_kept == 8  # seven within the window, one before it
    assert pitr.disk_mb == 8 * 512 + 8 * 256
    weekly = pitr_of(window_days=7, base_every_days=7, database_mb=512, wal_mb_per_day=256)
    assert weekly.base_backups_kept == 2 and weekly.disk_mb == 2 * 512 + 14 * 256


def test_a_window_that_cannot_fit_the_disk_is_refused_naming_the_numbers():
    message = problems("prod", with_backup(pitr={"window_days": 30, "database_mb": 2048}))
    assert ("aiia:platform.backup.pitr: a 30-day window needs about 71424 MB (31 base backups "
            "of database_mb=2048 and 31 days of WAL at wal_mb_per_day=256), more than the 30 % "
            "of aiia:host.disk_gb=20 it may take (6144 MB)") in message
    assert "lower window_days, raise base_every_days, or raise host.disk_gb" in message
    # Off, nothing is counted.
    parse("prod", with_backup(pitr={"enabled": False, "window_days": 30, "database_mb": 2048}))


@pytest.mark.parametrize(("values", "expected"), [
    ({"window_days": 0}, "pitr.window_days=0 must be between 1 and 35"),
    ({"rpo_seconds": 5}, "pitr.rpo_seconds=5 must be between 30 and 3600 (below 30 s"),
    ({"base_every_days": 9}, "pitr.base_every_days=9 must be between 1 and 7"),
    ({"window_days": 2, "base_every_days": 3}, "base_every_days=3 is longer than window_days=2"),
    ({"base_time": 160}, "pitr.base_time=160 is a number: quote the time"),
    ({"drill_time": "25:00"}, "pitr.drill_time='25:00' must be a UTC time HH:MM"),
    ({"rpo_second": 60}, "pitr.rpo_second is not a setting; did you mean 'rpo_seconds'?"),
    ({"reserve_mb": 10}, "pitr.reserve_mb=10 must be between 256 and"),
])
def test_bad_values_are_refused_naming_the_key(values, expected):
    assert expected in problems("prod", with_backup(pitr=values))


def test_not_an_object_is_refused():
    assert "aiia:platform.backup.pitr must be an object (e.g. window_days: 7) or false" in \
        problems("prod", with_backup(pitr="weekly"))

"""platform.backup: every bad value is refused at preview, naming the key and the fix; the
operators' keys are read by GnuPG itself (real keys made here, one of them expired)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.platform.backup import render_backup_cron
from tests.harness.program import host_files, run_program, stack_config
from tests.unit.test_settings import parse, problems


def make_key(home: Path, user_id: str, expiry: str, *faked_time: str) -> str:
    home.mkdir(mode=0o700)
    options = ["gpg", "--homedir", str(home), "--batch", "--no-tty", *faked_time]
    subprocess.run([*options, "--passphrase", "", "--quick-generate-key", user_id,
                    "future-default", "default", expiry], check=True, capture_output=True,
                   timeout=60)
    exported = subprocess.run([*options, "--armor", "--export"], check=True,
                              capture_output=True, text=True, timeout=60).stdout
    # Key generation started an agent for this home: stop it, it would outlive the test.
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    return exported


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("gpg")
    good = make_key(base / "good", "Ops <ops@example.test>", "2y")
    # Made "in 2020" with a one-day life: expired long before today.
    expired = make_key(base / "expired", "Old <old@example.test>", "1d",
                       "--faked-system-time", "20200101T000000")
    path = base / "ops.asc"
    path.write_text(good)
    return {"good": good, "expired": expired, "path": str(path)}


def with_backup(**values):
    """The stack file's backup settings with `values` changed (the test operator key that
    tests/harness/program.py pins stays unless `recipients` is given)."""
    def change(raw):
        raw["platform"]["backup"] = {**raw["platform"].get("backup", {}), **values}
    return change


def test_a_key_given_as_text_or_as_a_file_is_read_with_its_fingerprint(keys):
    for value in (keys["good"], keys["path"]):
        backup = parse("prod", with_backup(recipients=[value])).platform.backup
        (key,) = backup.keys
        assert len(key.fingerprint) == 40 and key.user_id == "Ops <ops@example.test>"
        assert key.expires_at is not None


def test_an_expired_key_is_refused_with_its_date_and_the_fix(keys):
    message = problems("prod", with_backup(recipients=[keys["good"], keys["expired"]]))
    assert "aiia:platform.backup.recipients[1]=<armored key>" in message
    assert "expired on 2020-01-02" in message and "gpg --quick-set-expire" in message
    assert "recipients[0]" not in message


def test_a_malformed_or_missing_key_is_refused(keys, tmp_path):
    broken = keys["good"].replace(keys["good"].splitlines()[5], "AAAA" * 16)
    message = problems("prod", with_backup(recipients=[broken, str(tmp_path / "none.asc"),
                                                       "not a key"]))
    assert "recipients[0]=<armored key> is not a readable OpenPGP public key" in message
    assert f"recipients[1]='{tmp_path / 'none.asc'}' cannot be read (No such file" in message
    assert "recipients[2]='not a key' cannot be read" in message


@pytest.mark.parametrize("name", ["keep_daily", "keep_monthly"])
def test_retention_of_zero_is_refused(name):
    message = problems("prod", with_backup(**{name: 0}))
    assert f"aiia:platform.backup.{name}=0 must be between 1 and" in message
    assert "would keep no backup" in message


def test_the_disk_budget_is_checked_against_the_host_disk():
    message = problems("prod", with_backup(disk_budget_mb=9000))
    assert "aiia:platform.backup.disk_budget_mb=9000 is more than 40 % of " \
           "aiia:host.disk_gb=20 (8192 MB)" in message

    def bigger_disk(raw):
        raw["host"]["disk_gb"] = 40
        raw["platform"]["backup"]["disk_budget_mb"] = 9000

    assert parse("prod", bigger_disk).platform.backup.disk_budget_mb == 9000


def test_an_off_host_target_needs_a_pinned_host_key():
    message = problems("prod", with_backup(off_host={"host": "backup.example.net",
                                                      "path": "/srv/backups"}))
    assert "aiia:platform.backup.off_host.host_key is missing" in message
    assert "ssh-keyscan" in message
    message = problems("prod", with_backup(off_host={"host": "backup.example.net",
                                                      "path": "srv", "host_key": "AAAA"}))
    assert "off_host.host_key='AAAA'… is not an OpenSSH public key" in message
    assert "off_host.path='srv' must be an absolute path" in message
    host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    target = parse("prod", with_backup(off_host={
        "host": "backup.example.net", "path": "/srv/backups", "host_key": host_key}
    )).platform.backup.off_host
    assert target.user == "aiia-backup" and target.port == 22


def test_times_must_be_hh_mm_and_the_drill_day_in_every_month():
    message = problems("prod", with_backup(time="3:30", drill_time="24:00", drill_day=31))
    assert "aiia:platform.backup.time='3:30' must be a UTC time HH:MM" in message
    assert "aiia:platform.backup.drill_time='24:00' must be a UTC time HH:MM" in message
    assert "aiia:platform.backup.drill_day=31 must be between 1 and 28" in message


def test_the_cron_entry_runs_the_backup_daily_and_the_drill_monthly():
    entry = render_backup_cron("/srv/aiia/bin/backup.sh", "/srv/aiia/logs/backup.log",
                               "03:30", 1, "05:10")
    lines = [line for line in entry.splitlines() if line and line[0].isdigit()]
    assert lines == [
        "30 3 * * * root /srv/aiia/bin/backup.sh run >> /srv/aiia/logs/backup.log 2>&1",
        "10 5 1 * * root /srv/aiia/bin/backup.sh drill >> /srv/aiia/logs/backup.log 2>&1"]


def test_the_platform_installs_the_backup_with_every_recipient(keys):
    config = stack_config("prod")
    config["aiia:platform"]["backup"] = {"recipients": [keys["path"]], "time": "02:15"}
    files = host_files(run_program("prod", config=config))
    fingerprint = parse("prod", with_backup(recipients=[keys["path"]])).platform.backup \
        .keys[0].fingerprint
    assert files[f"/srv/aiia/backup/keys/operator-{fingerprint}.asc"] == keys["good"]
    job = files["/srv/aiia/bin/backup-job.sh"]
    assert f"/keys/operator-{fingerprint}.asc" in job and "/keys/drill.asc" in job
    assert "15 2 * * * root /srv/aiia/bin/backup.sh run" in files["/etc/cron.d/aiia-backup"]
    script = files["/srv/aiia/bin/backup.sh"]
    assert "--memory 64m --memory-swap 64m" in script


def test_an_unquoted_time_that_yaml_read_as_a_number_is_refused_with_the_fix():
    # YAML 1.1 reads 03:30 as the base-60 number 210.
    message = problems("prod", with_backup(time=210))
    assert 'aiia:platform.backup.time=210 is a number: quote the time' in message

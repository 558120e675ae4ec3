"""components/settings/backup.py: platform.backup, every bad value refused at preview, naming
the key and the fix; the operators' keys are read by GnuPG itself (real keys made in
tests/unit/conftest.py, one of them expired)."""

import pytest

from tests.harness.settings import parse, problems, with_backup


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


def test_an_unquoted_time_that_yaml_read_as_a_number_is_refused_with_the_fix():
    # YAML 1.1 reads 03:30 as the base-60 number 210.
    message = problems("prod", with_backup(time=210))
    assert 'aiia:platform.backup.time=210 is a number: quote the time' in message


def test_a_pasted_gpg_private_key_is_refused_and_called_leaked():
    private = ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQVYBGV0ZXN0\n"
               "-----END PGP PRIVATE KEY BLOCK-----\n")
    message = problems("prod", with_backup(recipients=[private]))
    assert "aiia:platform.backup.recipients[0] holds a PRIVATE key" in message
    assert "cannot be read" not in message


@pytest.mark.parametrize("field,value,expected", [
    ("path", "/srv/b/$(touch /tmp/PWNED)", "must be an absolute path of plain names"),
    ("path", "/srv/b\nx", "must be an absolute path of plain names"),
    ("host", "backup.example.net\n[evil]:22 ssh-ed25519 AAAA", "is neither a host name nor"),
    ("user", "aiia$(id)", "is not a valid Linux user name"),
])
def test_off_host_values_that_reach_root_shells_are_strict(field, value, expected):
    off_host = {"host": "backup.example.net", "path": "/srv/aiia-backups",
                "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9"
                            "okWi0dh2l9GKJl", field: value}
    message = problems("prod", with_backup(off_host=off_host))
    assert f"aiia:platform.backup.off_host.{field}={value!r} {expected}" in message

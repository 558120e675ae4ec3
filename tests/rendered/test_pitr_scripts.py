"""PITR's scripts run for real, outside any container: PostgreSQL's archive_command
(templates/pitr/archive.sh.j2) with real GnuPG on a scratch directory, and the off-host
receiver's `wal` request (templates/backup/receive-backup.sh.j2) by sh as sshd runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from components.host.templates import render
from tests.rendered.test_backup_scripts import receive

pytestmark = pytest.mark.rendered

SEGMENT = "000000010000000000000003"


def gpg(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
                          capture_output=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> tuple[Path, Path]:
    """A key pair: (its GnuPG home, a directory holding its public half as the server sees)."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg(home, "--passphrase", "", "--quick-generate-key", "Drill <drill@x.invalid>",
        "future-default", "default", "1y")
    keys = tmp_path_factory.mktemp("keys")
    (keys / "drill.asc").write_bytes(gpg(home, "--armor", "--export").stdout)
    return home, keys


def archiver(tmp_path: Path, keys: Path, reserve_mb: int = 256,
             cap_mb: int = 64) -> tuple[Path, Path, Path]:
    """archive.sh rendered for a scratch archive, and a PGDATA with one completed segment."""
    script = tmp_path / "archive.sh"
    archive = tmp_path / "archive"
    archive.mkdir()
    script.write_text(render("pitr/archive.sh.j2", root_dir="/srv/aiia", archive_mount=str(archive),
                             keys_dir=str(keys), reserve_mb=reserve_mb, wal_keep_cap_mb=cap_mb))
    pgdata = tmp_path / "pgdata"
    (pgdata / "pg_wal" / "archive_status").mkdir(parents=True)
    segment = pgdata / "pg_wal" / SEGMENT
    segment.write_bytes(b"WAL records " * 1000 + bytes(16 * 1024 * 1024 - 12000))
    return script, archive / "pg17", pgdata


def archive_command(script: Path, pgdata: Path, name: str = SEGMENT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), f"pg_wal/{name}", name, "17"], cwd=pgdata,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "TMPDIR": str(pgdata)})


def test_a_segment_is_archived_encrypted_compressed_and_decrypts_to_itself(tmp_path, key):
    home, keys = key
    script, archive, pgdata = archiver(tmp_path, keys)
    result = archive_command(script, pgdata)
    assert result.returncode == 0, result.stderr
    stored = archive / "wal" / f"{SEGMENT}.gpg"
    assert stored.stat().st_size < 1024 * 1024  # 16 MB of mostly zeros, compressed
    assert b"WAL records" not in stored.read_bytes()
    plain = gpg(home, "--decrypt", str(stored)).stdout
    assert plain == (pgdata / "pg_wal" / SEGMENT).read_bytes()
    assert sorted(path.name for path in (archive / "wal").iterdir()) == \
        [f"{SEGMENT}.gpg", f"{SEGMENT}.gpg.sha256"]


def test_archiving_again_succeeds_for_the_same_segment_and_never_overwrites_another(tmp_path, key):
    script, archive, pgdata = archiver(tmp_path, key[1])
    assert archive_command(script, pgdata).returncode == 0
    stored = (archive / "wal" / f"{SEGMENT}.gpg").read_bytes()
    assert archive_command(script, pgdata).returncode == 0  # a retry after a crash
    (pgdata / "pg_wal" / SEGMENT).write_bytes(b"other content")
    refused = archive_command(script, pgdata)
    assert refused.returncode == 1 and "refusing to overwrite" in refused.stderr
    assert (archive / "wal" / f"{SEGMENT}.gpg").read_bytes() == stored


def test_without_a_key_the_segment_stays_with_postgresql(tmp_path, key):
    empty = tmp_path / "no-keys"
    empty.mkdir()
    script, archive, pgdata = archiver(tmp_path, empty)
    result = archive_command(script, pgdata)
    assert result.returncode == 1 and "no key to encrypt to" in result.stderr
    assert not list((archive / "wal").glob("*.gpg"))


def test_below_the_reserve_postgresql_keeps_wal_until_the_cap_then_a_gap_is_recorded(tmp_path, key):
    # A reserve larger than any disk: the disk is always "full".
    script, archive, pgdata = archiver(tmp_path, key[1], reserve_mb=10**9, cap_mb=64)
    kept = archive_command(script, pgdata)
    assert kept.returncode == 1 and "kept in pg_wal" in kept.stderr
    assert not (archive / "gaps" / f"{SEGMENT}.json").exists()
    for number in range(4, 8):  # 4 segments of 16 MB waiting: the 64 MB cap
        (pgdata / "pg_wal" / "archive_status" / f"00000001000000000000000{number}.ready").touch()
    dropped = archive_command(script, pgdata)
    assert dropped.returncode == 0 and "DROPPED" in dropped.stderr
    gap = json.loads((archive / "gaps" / f"{SEGMENT}.json").read_text())
    assert gap["wal"] == SEGMENT and "disk reserve reached" in gap["reason"]
    assert not list((archive / "wal").glob("*.gpg"))


def test_the_receiver_stores_each_wal_file_once_read_only(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    stored = receive(store, f"wal {SEGMENT}.gpg", b"encrypted segment")
    assert stored.returncode == 0, stored
    path = store / "wal" / f"{SEGMENT}.gpg"
    assert path.read_bytes() == b"encrypted segment" and path.stat().st_mode & 0o222 == 0
    again = receive(store, f"wal {SEGMENT}.gpg", b"a forged segment")
    assert again.returncode == 2 and b"never overwritten" in again.stderr
    assert path.read_bytes() == b"encrypted segment"
    history = receive(store, "wal 00000002.history.gpg", b"history")
    assert history.returncode == 0, history


@pytest.mark.parametrize("name", ["../x.gpg", "000000010000000000000003", ".hidden.gpg",
                                  "received.log", "00000001/../../x.gpg", "0000000G.gpg"])
def test_the_receiver_refuses_any_other_wal_name(tmp_path, name):
    store = tmp_path / "store"
    store.mkdir()
    refused = receive(store, f"wal {name}", b"data")
    assert refused.returncode == 2 and b"refused" in refused.stderr, refused
    assert not [path for path in store.rglob("*") if path.is_file()]

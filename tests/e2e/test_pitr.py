"""Point-in-time recovery on the real engine: the PostgreSQL stand-in archiving its own WAL
through the program's archive_command (real GnuPG), the program's {root}/bin/pitr.sh taking a
base backup, restoring one environment's database to a chosen second while the other keeps
its later writes and keeps serving, and the drill checking a marker.

One stack for the module, in order: archiving is on → a base backup → rows written before
and after a second T in prod, and after T in staging → a dry run changes nothing → the
restore brings prod back to T (staging untouched, the replaced database kept, the swap
timed) → times outside the window are refused → the drill at a chosen second finds the
marker written just before it. Not modelled: the host's cron daemon (its entries are run
as cron would), the off-host copy of WAL (tests/unit and the receiver's own test).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime

import pytest

from components.names import database_name
from tests.harness.local_stack import LocalStack

pytestmark = pytest.mark.e2e


def run(stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(stack.root / "bin" / "pitr.sh"), *args], capture_output=True,
                          text=True, timeout=600, check=False)


def said(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-4000:]


def psql(stack: LocalStack, sql: str, database: str = "postgres") -> str:
    return stack.exec(stack.container("postgres"), "psql", "-U", "postgres", "-X", "-qAt",
                      "-v", "ON_ERROR_STOP=1", "-d", database, "-f", "-",
                      stdin=sql).stdout.strip()


def env_sql(stack: LocalStack, environment: str, sql: str) -> str:
    return psql(stack, sql, database_name(stack.prefix, environment))


@pytest.fixture(scope="module")
def stack(local_stack: LocalStack) -> LocalStack:
    """The module's stack, with a base backup taken (as cron takes it)."""
    result = run(local_stack, "base")
    assert result.returncode == 0, said(result)
    return local_stack


def test_postgres_archives_every_segment_encrypted(stack):
    assert psql(stack, "SHOW archive_mode") == "on"
    psql(stack, "SELECT pg_switch_wal()")
    archive = stack.root / "pitr" / "wal"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        segments = list(archive.glob("pg*/wal/0*.gpg"))
        if segments and psql(stack, "SELECT failed_count FROM pg_stat_archiver") == "0":
            break
        time.sleep(1)
    assert segments, "no archived segment"
    # Encrypted (an OpenPGP message), and smaller than a 16 MB segment: compressed first.
    head = segments[0].read_bytes()[:1]
    assert head and head[0] & 0x80, f"{segments[0]} is not an OpenPGP message"
    assert all(path.stat().st_size < 4 * 1024 * 1024 for path in segments)
    assert b"aiia_pitr" not in segments[-1].read_bytes()


def test_restore_brings_one_environment_back_to_the_second(stack):
    for environment in ("prod", "staging"):
        env_sql(stack, environment, "CREATE TABLE orders (id serial PRIMARY KEY, note text);"
                "INSERT INTO orders (note) SELECT 'before' FROM generate_series(1, 100);")
    time.sleep(1.2)
    target = psql(stack, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD HH24:MI:SS.US+00')")
    time.sleep(1.2)
    for environment in ("prod", "staging"):  # the afternoon the operator lost
        env_sql(stack, environment, "INSERT INTO orders (note) SELECT 'after' "
                "FROM generate_series(1, 50); DELETE FROM orders WHERE id <= 10;")
    database = database_name(stack.prefix, "prod")

    dry = run(stack, "restore", "prod", target, "--dry-run")
    assert dry.returncode == 0, said(dry)
    assert "dry run: nothing was changed" in dry.stdout
    assert env_sql(stack, "prod", "SELECT count(*) FROM orders") == "140"

    result = run(stack, "restore", "prod", target)
    assert result.returncode == 0, said(result)
    assert env_sql(stack, "prod", "SELECT count(*), min(id), max(id) FROM orders") == "100|1|100"
    # The other environment kept its writes after T, and the app's role owns what came back.
    assert env_sql(stack, "staging", "SELECT count(*) FROM orders") == "140"
    assert env_sql(stack, "prod", "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'") \
        == f"{stack.prefix}_prod"
    pattern = f"{database}_replaced_%"
    replaced = psql(stack, f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}'")  # noqa: S608
    assert replaced, said(result)
    record = json.loads((stack.root / "state" / "pitr-restores.jsonl").read_text().splitlines()[-1])
    assert record["environment"] == "prod" and record["replaced"] == replaced
    assert record["swap_seconds"] < record["restore_seconds"]
    # Both environments serve through it all and after.
    for environment in ("prod", "staging"):
        assert stack.get(environment, "/healthz/").status == 200
    # The maintenance switch is as it was (off), and the replaced database can be dropped.
    switch = (stack.root / "nginx" / "maintenance" / "prod.conf").read_text()
    assert "503" not in switch or "off" in switch
    dropped = run(stack, "drop-replaced", "prod", replaced)
    assert dropped.returncode == 0, said(dropped)
    assert not psql(stack, f"SELECT 1 FROM pg_database WHERE datname = '{replaced}'")  # noqa: S608


def test_a_time_outside_the_window_is_refused(stack):
    before = run(stack, "restore", "prod", "2020-01-01 00:00:00+00")
    assert before.returncode == 1
    assert "is before the window: a restore reaches" in before.stdout
    future = run(stack, "restore", "prod", "2099-01-01 00:00:00+00", "--dry-run")
    assert future.returncode == 1 and "in the future" in future.stdout
    nonsense = run(stack, "restore", "prod", "yesterday-ish")
    assert nonsense.returncode == 1 and "is not a time" in nonsense.stdout


def test_the_drill_finds_the_marker_before_its_target(stack):
    tick = run(stack, "tick", "1")
    assert tick.returncode == 0, said(tick)
    marker = psql(stack, "SELECT to_char(max(at) AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM aiia_pitr_marker")
    time.sleep(2.5)
    target = psql(stack, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD HH24:MI:SS+00')")
    time.sleep(1.2)
    result = run(stack, "drill", target)
    assert result.returncode == 0, said(result)
    drill = json.loads((stack.root / "state" / "pitr-drills.jsonl").read_text().splitlines()[-1])
    assert drill["outcome"] == "succeeded"
    assert drill["marker_at"] == marker
    # The RPO it records: from the newest marker to the target, whole seconds.
    seconds = (datetime.fromisoformat(target) - datetime.fromisoformat(marker)).total_seconds()
    assert seconds >= 2 and drill["rpo_seconds"] == seconds
    status = json.loads((stack.root / "state" / "pitr.json").read_text())
    assert status["base"]["count"] == 1 and status["window"]["from"]
    assert status["archive"]["last_archived_at"] and not status["gaps"]


def test_a_gap_refuses_restores_past_it_until_the_tick_starts_a_new_chain(stack):
    bases = sorted((stack.root / "pitr" / "base").glob("pg*/2*"))
    start = json.loads((bases[-1] / "meta.json").read_text())["start_wal"]
    dropped = f"{start[:16]}{int(start[16:], 16) + 1:08X}"
    gaps = bases[-1].parent.parent.parent / "wal" / bases[-1].parent.name / "gaps"
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    (gaps / f"{dropped}.json").write_text(json.dumps(
        {"at": at, "wal": dropped, "reason": "disk reserve reached: 10 MB free"}))
    refused = run(stack, "restore", "prod", "now", "--dry-run")
    assert refused.returncode == 1, said(refused)
    assert f"is past a gap of the archive: {dropped} was dropped at {at}" in refused.stdout
    assert "disk reserve reached" in refused.stdout
    tick = run(stack, "tick", "1")
    assert tick.returncode == 0, said(tick)
    assert "a gap after the newest base backup: taking a new one" in tick.stdout
    assert len(list(bases[-1].parent.glob("2*"))) == len(bases) + 1
    time.sleep(1.5)
    allowed = run(stack, "restore", "prod", "now", "--dry-run")
    assert allowed.returncode == 0, said(allowed)


def test_verify_finds_a_corrupt_and_a_missing_segment(stack):
    good = run(stack, "verify")
    assert good.returncode == 0, said(good)
    assert "every segment from the oldest base backup on is there" in good.stdout
    archive = next((stack.root / "pitr" / "wal").glob("pg*")) / "wal"
    for _ in range(3):  # three more segments, each with something in it
        before = len(list(archive.glob("0*.gpg")))
        psql(stack, "INSERT INTO aiia_pitr_marker DEFAULT VALUES")
        psql(stack, "SELECT pg_switch_wal()")
        deadline = time.monotonic() + 60
        while len(list(archive.glob("0*.gpg"))) <= before:
            assert time.monotonic() < deadline, "the switched segment was not archived"
            time.sleep(0.5)
    missing, corrupt = sorted(archive.glob("0*.gpg"))[-3:-1]
    saved = {path: path.read_bytes() for path in (missing, corrupt)}
    try:
        missing.unlink()
        corrupt.write_bytes(saved[corrupt][:200] + bytes(64) + saved[corrupt][264:])
        bad = run(stack, "verify")
        assert bad.returncode == 1, said(bad)
        assert f"{missing.stem}: missing from the archive" in bad.stdout
        assert f"{corrupt.name}: does not decrypt" in bad.stdout
    finally:
        for path, content in saved.items():
            path.write_bytes(content)
            shutil.chown(path, 999, 999)
    assert run(stack, "verify").returncode == 0

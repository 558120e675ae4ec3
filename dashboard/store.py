"""The collector's history in SQLite: probes, host samples, per-minute request counts.

Only the collector opens this database (the server reads the collector's JSON snapshot),
so the file can stay private to root and there is never a second writer. Retention is
bounded: probe rows for ``Retention.probe_days`` (30-day uptime needs 30 days), host
samples and request counts for about a day. Pruning runs on every collection, so the file
stays at a few MB whatever the host's uptime.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import Retention

SCHEMA = """
CREATE TABLE IF NOT EXISTS probes (
    ts          INTEGER NOT NULL,     -- epoch seconds (UTC)
    environment TEXT    NOT NULL,
    ok          INTEGER NOT NULL,     -- 1 when the health endpoint answered 2xx in time
    status_code INTEGER,              -- NULL when no HTTP answer arrived
    latency_ms  REAL,
    error       TEXT
);
CREATE INDEX IF NOT EXISTS probes_by_environment ON probes (environment, ts);

CREATE TABLE IF NOT EXISTS host_samples (
    ts             INTEGER PRIMARY KEY,
    cpu_percent    REAL,              -- average since the previous sample
    memory_percent REAL,
    swap_percent   REAL,
    disk_percent   REAL,
    load1          REAL,
    cpu_busy_s     REAL,              -- cumulative, to average CPU between two runs
    cpu_total_s    REAL
);

CREATE TABLE IF NOT EXISTS request_minutes (
    minute      INTEGER NOT NULL,     -- epoch seconds of the minute's start
    environment TEXT    NOT NULL,
    requests    INTEGER NOT NULL,
    errors_5xx  INTEGER NOT NULL,
    PRIMARY KEY (minute, environment)
);

CREATE TABLE IF NOT EXISTS malformed_minutes (
    minute INTEGER PRIMARY KEY,       -- when the collector read them (they carry no usable time)
    lines  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS collector_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ProbeRow:
    ts: int
    environment: str
    ok: bool
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class HostSample:
    ts: int
    cpu_percent: float | None
    memory_percent: float
    swap_percent: float
    disk_percent: float
    load1: float
    cpu_busy_s: float
    cpu_total_s: float


@contextmanager
def open_store(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10)
    try:
        # A rollback journal (not WAL): nothing but the collector opens the file, and it
        # leaves no -wal/-shm files lying around the state directory.
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(SCHEMA)
        with connection:
            yield connection
    finally:
        connection.close()


def insert_probes(connection: sqlite3.Connection, rows: Iterable[ProbeRow]) -> None:
    connection.executemany(
        "INSERT INTO probes (ts, environment, ok, status_code, latency_ms, error)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(r.ts, r.environment, int(r.ok), r.status_code, r.latency_ms, r.error) for r in rows],
    )


def probes_since(connection: sqlite3.Connection, environment: str, since: int) -> list[ProbeRow]:
    cursor = connection.execute(
        "SELECT ts, environment, ok, status_code, latency_ms, error FROM probes"
        " WHERE environment = ? AND ts >= ? ORDER BY ts",
        (environment, since),
    )
    return [
        ProbeRow(ts, env, bool(ok), code, latency, error)
        for ts, env, ok, code, latency, error in cursor
    ]


def probe_points_since(
    connection: sqlite3.Connection, environment: str, since: int
) -> list[tuple[int, int]]:
    """Only (ts, ok), as plain tuples: what uptime needs, fast for 30 days of rows."""
    return connection.execute(
        "SELECT ts, ok FROM probes WHERE environment = ? AND ts >= ? ORDER BY ts",
        (environment, since),
    ).fetchall()


def failing_since(connection: sqlite3.Connection, environment: str) -> int | None:
    """Start of the current run of failed probes (None when the last probe was ok)."""
    row = connection.execute(
        "SELECT MIN(ts) FROM probes WHERE environment = ? AND ok = 0 AND ts > "
        "COALESCE((SELECT MAX(ts) FROM probes WHERE environment = ? AND ok = 1), -1)",
        (environment, environment),
    ).fetchone()
    return row[0]


def first_probe_ts(connection: sqlite3.Connection, environment: str) -> int | None:
    row = connection.execute(
        "SELECT MIN(ts) FROM probes WHERE environment = ?", (environment,)
    ).fetchone()
    return row[0]


def insert_host_sample(connection: sqlite3.Connection, sample: HostSample) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO host_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sample.ts,
            sample.cpu_percent,
            sample.memory_percent,
            sample.swap_percent,
            sample.disk_percent,
            sample.load1,
            sample.cpu_busy_s,
            sample.cpu_total_s,
        ),
    )


def last_host_sample(connection: sqlite3.Connection) -> HostSample | None:
    row = connection.execute("SELECT * FROM host_samples ORDER BY ts DESC LIMIT 1").fetchone()
    return HostSample(*row) if row else None


def host_samples_since(connection: sqlite3.Connection, since: int) -> list[HostSample]:
    cursor = connection.execute("SELECT * FROM host_samples WHERE ts >= ? ORDER BY ts", (since,))
    return [HostSample(*row) for row in cursor]


def add_request_counts(
    connection: sqlite3.Connection, counts: dict[tuple[int, str], tuple[int, int]]
) -> None:
    connection.executemany(
        "INSERT INTO request_minutes (minute, environment, requests, errors_5xx)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (minute, environment) DO UPDATE SET"
        " requests = requests + excluded.requests, errors_5xx = errors_5xx + excluded.errors_5xx",
        [(minute, env, requests, errors) for (minute, env), (requests, errors) in counts.items()],
    )


def request_counts_since(
    connection: sqlite3.Connection, since: int
) -> list[tuple[int, str, int, int]]:
    return connection.execute(
        "SELECT minute, environment, requests, errors_5xx FROM request_minutes"
        " WHERE minute >= ? ORDER BY minute",
        (since,),
    ).fetchall()


def add_malformed(connection: sqlite3.Connection, minute: int, lines: int) -> None:
    if lines:
        connection.execute(
            "INSERT INTO malformed_minutes VALUES (?, ?)"
            " ON CONFLICT (minute) DO UPDATE SET lines = lines + excluded.lines",
            (minute, lines),
        )


def malformed_since(connection: sqlite3.Connection, since: int) -> int:
    row = connection.execute(
        "SELECT COALESCE(SUM(lines), 0) FROM malformed_minutes WHERE minute >= ?", (since,)
    ).fetchone()
    return int(row[0])


def get_state(connection: sqlite3.Connection, key: str) -> str | None:
    row = connection.execute("SELECT value FROM collector_state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_state(connection: sqlite3.Connection, key: str, value: str) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO collector_state (key, value) VALUES (?, ?)", (key, value)
    )


def prune(connection: sqlite3.Connection, now: int, retention: Retention) -> dict[str, int]:
    """Delete rows older than the retention; returns how many rows went per table."""
    cutoffs = {
        "probes": ("ts", now - retention.probe_days * 86400),
        "host_samples": ("ts", now - retention.host_hours * 3600),
        "request_minutes": ("minute", now - retention.request_hours * 3600),
        "malformed_minutes": ("minute", now - retention.request_hours * 3600),
    }
    deleted = {}
    for table, (column, cutoff) in cutoffs.items():
        # Table and column names come from the literal dict above, never from input.
        cursor = connection.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))  # noqa: S608
        deleted[table] = cursor.rowcount
    return deleted


def row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = ("probes", "host_samples", "request_minutes", "malformed_minutes")
    return {
        t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
        for t in tables
    }

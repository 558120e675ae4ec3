"""The 5xx share per environment from nginx's JSON access log (docs/architecture.md).

nginx writes one JSON object per line (``log_format aiia_json escape=json``) with ``env``,
a numeric ``status`` and an ISO ``time``: no regex over a free-text format, and an
environment name in every line, so the share per environment is exact.

The collector reads only what was appended since its last run (it keeps the file's inode
and offset), handles both logrotate styles (rename + create: finish the rotated ``.1``
file first; copytruncate: the file shrank, start over) and never reads more than a bounded
number of bytes per run, so a 50 MB log costs nothing more than a small one. Counts are
kept per minute and environment in SQLite; the 5-minute and 1-hour windows are sums.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .timestamps import parse_utc

WINDOWS = {"5m": 300, "1h": 3600}
CHUNK_BYTES = 1 << 20


# What nginx logs as the URI of a request the maintenance page answered (its 503 is on
# purpose: not the release's error; templates/nginx/site.conf.j2).
MAINTENANCE_PAGE = "/aiia-maintenance.html"

@dataclass(frozen=True)
class AccessEntry:
    time: float
    environment: str
    status: int
    maintenance: bool = False  # the maintenance page's 503 (releases.<env>.maintenance)


@dataclass
class AccessCounts:
    """Requests and 5xx per (minute start, environment), plus lines that were not usable."""

    per_minute: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    malformed: int = 0

    maintenance: int = 0  # answered by the maintenance page: neither a request nor a 5xx

    def add(self, entry: AccessEntry) -> None:
        key = (int(entry.time // 60 * 60), entry.environment)
        requests, errors = self.per_minute.get(key, (0, 0))
        self.per_minute[key] = (requests + 1, errors + (500 <= entry.status <= 599))


def parse_access_line(line: bytes | str) -> AccessEntry | None:
    """One log line → entry, or None when it is not a usable aiia_json line."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    status, environment = record.get("status"), record.get("env")
    when = parse_utc(record.get("time"))
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return None
    if not isinstance(environment, str) or not environment or when is None:
        return None
    return AccessEntry(time=when, environment=environment, status=status,
                       maintenance=record.get("uri") == MAINTENANCE_PAGE)


def count_lines(lines: Iterable[bytes | str]) -> AccessCounts:
    counts = AccessCounts()
    for line in lines:
        if not line.strip():
            continue  # an empty line is not a request, and not worth a warning
        entry = parse_access_line(line)
        if entry is None:
            counts.malformed += 1
        elif entry.maintenance:
            counts.maintenance += 1
        else:
            counts.add(entry)
    return counts


def error_rates(
    rows: Iterable[tuple[int, str, int, int]], now: float, windows: dict[str, int] = WINDOWS
) -> dict[str, dict[str, dict]]:
    """Per environment and window: requests, 5xx count and 5xx share in percent.

    Rows are (minute start, environment, requests, 5xx). A minute belongs to a window when
    it started within the window, so "5m" is the current minute and the four before it.
    The share is None when there were no requests (nothing to divide, not 0 %).
    """
    result: dict[str, dict[str, dict]] = {}
    rows = list(rows)
    for environment in sorted({row[1] for row in rows}):
        result[environment] = {}
        for name, seconds in windows.items():
            requests = errors = 0
            for minute, env, minute_requests, minute_errors in rows:
                if env == environment and now - seconds <= minute <= now:
                    requests += minute_requests
                    errors += minute_errors
            result[environment][name] = {
                "requests": requests,
                "errors_5xx": errors,
                "share_percent": round(100.0 * errors / requests, 3) if requests else None,
            }
    return result


@dataclass(frozen=True)
class LogCursor:
    inode: int
    offset: int

    def to_json(self) -> str:
        return json.dumps({"inode": self.inode, "offset": self.offset})

    @classmethod
    def from_json(cls, text: str | None) -> LogCursor | None:
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(int(raw["inode"]), int(raw["offset"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class ReadResult:
    counts: AccessCounts
    cursor: LogCursor | None
    bytes_read: int = 0
    bytes_skipped: int = 0
    rotated: bool = False


def read_new_lines(
    path: Path, cursor: LogCursor | None, max_bytes: int = 16 << 20, first_read_bytes: int = 4 << 20
) -> ReadResult:
    """Count the lines appended to ``path`` since ``cursor``; returns the new cursor.

    First run (no cursor): only the last ``first_read_bytes`` (the recent past, enough for
    the 1-hour window on a small host). A partial last line is left for the next run.
    """
    counts = AccessCounts()
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after rotation handling
    except FileNotFoundError:
        return ReadResult(counts, cursor)
    with handle:
        stat = os.fstat(handle.fileno())
        result = ReadResult(counts, cursor)
        if cursor is not None and cursor.inode != stat.st_ino:
            # Renamed away by logrotate: finish the old file if it is still beside us.
            result.rotated = True
            rotated = path.with_name(path.name + ".1")
            try:
                with open(rotated, "rb") as old:
                    if os.fstat(old.fileno()).st_ino == cursor.inode:
                        _consume(
                            old,
                            cursor.offset,
                            os.fstat(old.fileno()).st_size,
                            max_bytes,
                            counts,
                            result,
                        )
            except FileNotFoundError:
                pass
            start = 0
        elif cursor is not None and stat.st_size < cursor.offset:
            result.rotated = True  # copytruncate: same file, shorter
            start = 0
        elif cursor is None:
            start = max(0, stat.st_size - first_read_bytes)
        else:
            start = cursor.offset
        offset = _consume(
            handle,
            start,
            stat.st_size,
            max_bytes,
            counts,
            result,
            skip_partial_first=(cursor is None and start > 0),
        )
        result.cursor = LogCursor(stat.st_ino, offset)
    return result


def _consume(
    handle,
    start: int,
    size: int,
    max_bytes: int,
    counts: AccessCounts,
    result: ReadResult,
    skip_partial_first: bool = False,
) -> int:
    """Count complete lines in [start, size); returns the offset after the last one."""
    if size - start > max_bytes:
        result.bytes_skipped += size - max_bytes - start
        start, skip_partial_first = size - max_bytes, True
    if skip_partial_first and start > 0:
        handle.seek(start - 1)
        skip_partial_first = handle.read(1) != b"\n"  # starting mid-line: drop the fragment
    handle.seek(start)
    offset = start
    for line, end in _complete_lines(handle, start, size):
        if skip_partial_first:
            skip_partial_first = False
            offset = end
            continue
        offset = end
        if line.strip():
            entry = parse_access_line(line)
            if entry is None:
                counts.malformed += 1
            else:
                counts.add(entry)
    result.bytes_read += offset - start
    return offset


def _complete_lines(handle, start: int, size: int) -> Iterator[tuple[bytes, int]]:
    """Yield (line, offset after its newline) for newline-terminated lines, chunk by chunk."""
    position, pending = start, b""
    while position < size:
        chunk = handle.read(min(CHUNK_BYTES, size - position))
        if not chunk:
            break
        position += len(chunk)
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        end = position - len(pending)
        consumed_before = end - sum(len(line) + 1 for line in lines)
        for line in lines:
            consumed_before += len(line) + 1
            yield line, consumed_before

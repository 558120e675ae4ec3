"""The 5xx share per environment from nginx's JSON access log, read incrementally."""

from __future__ import annotations

import os
import time

import pytest

from dashboard.access_log import LogCursor, count_lines, error_rates, read_new_lines
from tests.harness.dashboard_status import access_log_line

NOW = 1_800_000_030.0  # 30 s into a minute


def line(seconds_ago: float, env: str, status: int) -> str:
    return access_log_line(NOW - seconds_ago, env, status)


MALFORMED = [
    "not json at all",
    '["an", "array"]',
    '{"time":"2027-01-15T08:00:00+00:00","env":"prod"}',  # no status
    '{"time":"2027-01-15T08:00:00+00:00","env":"prod","status":"500"}',  # status as text
    '{"time":"2027-01-15T08:00:00+00:00","env":"prod","status":true}',
    '{"time":"2027-01-15T08:00:00","env":"prod","status":200}',  # no zone: ambiguous
    '{"env":"prod","status":200}',  # no time
    '{"time":"2027-01-15T08:00:00+00:00","status":200}',  # no env
    '{"time":"2027-01-15T08:00:00+00:00","env":"prod","status":200',  # cut mid-line
]


def fixture_lines() -> list[str]:
    lines = []
    # prod, last 5 minutes: 100 requests, 4 of them 5xx (500, 502, 503, 599); a 499 is not 5xx.
    for i in range(96):
        lines.append(line(10 + i, "prod", 200 if i % 10 else 404))
    lines += [
        line(20, "prod", 500),
        line(40, "prod", 502),
        line(100, "prod", 503),
        line(200, "prod", 599),
    ]
    lines.append(line(30, "prod", 499))
    # prod, 10-50 minutes ago: 200 requests, 10 of them 5xx.
    for i in range(200):
        lines.append(line(600 + i * 12, "prod", 502 if i < 10 else 200))
    # prod, 2 hours ago: outside both windows.
    lines += [line(7200, "prod", 500)] * 5
    # staging, only 20 minutes ago: nothing in the last 5 minutes.
    lines += [line(1200, "staging", 200)] * 9 + [line(1200, "staging", 504)]
    lines += MALFORMED + ["", "   "]
    return lines


def test_5xx_share_per_environment_and_window_with_malformed_lines_counted():
    counts = count_lines(fixture_lines())
    assert counts.malformed == len(MALFORMED)  # empty lines are not requests nor malformed
    rates = error_rates([(m, e, r, x) for (m, e), (r, x) in counts.per_minute.items()], NOW)
    assert rates["prod"]["5m"] == {
        "requests": 101,
        "errors_5xx": 4,
        "share_percent": pytest.approx(100 * 4 / 101, abs=0.001),
    }
    assert rates["prod"]["1h"]["requests"] == 301
    assert rates["prod"]["1h"]["errors_5xx"] == 14
    assert rates["staging"]["5m"] == {"requests": 0, "errors_5xx": 0, "share_percent": None}
    assert rates["staging"]["1h"]["share_percent"] == pytest.approx(10.0)


def test_windows_are_whole_minutes_that_started_within_the_window():
    counts = count_lines(
        [line(0, "prod", 500), line(30 + 5 * 60, "prod", 500), line(30 + 4 * 60, "prod", 200)]
    )
    rows = [(m, e, r, x) for (m, e), (r, x) in counts.per_minute.items()]
    # NOW is 30 s into its minute: the minute that started 4.5 min ago counts, 5.5 min does not.
    assert error_rates(rows, NOW)["prod"]["5m"]["requests"] == 2


def write(path, lines, mode="a"):
    with open(path, mode) as handle:
        handle.write("".join(f"{entry}\n" for entry in lines))


def total_requests(result) -> int:
    return sum(r for r, _ in result.counts.per_minute.values())


def test_incremental_reads_count_each_line_once_and_wait_for_a_partial_line(tmp_path):
    log = tmp_path / "access.log"
    write(log, [line(5, "prod", 200)] * 3)
    first = read_new_lines(log, None)
    assert total_requests(first) == 3
    # nginx is mid-write: the last line has no newline yet.
    partial = line(4, "prod", 502)
    write(log, [line(4, "prod", 200)])
    with open(log, "a") as handle:
        handle.write(partial[:25])
    second = read_new_lines(log, first.cursor)
    assert total_requests(second) == 1
    assert second.counts.malformed == 0
    with open(log, "a") as handle:
        handle.write(partial[25:] + "\n")
    third = read_new_lines(log, second.cursor)
    assert total_requests(third) == 1
    assert sum(x for _, x in third.counts.per_minute.values()) == 1
    assert read_new_lines(log, third.cursor).bytes_read == 0


def test_rename_rotation_finishes_the_old_file_then_reads_the_new_one(tmp_path):
    log = tmp_path / "access.log"
    write(log, [line(9, "prod", 200)] * 2)
    first = read_new_lines(log, None)
    write(log, [line(8, "prod", 500)])  # written after our read, before logrotate
    os.rename(log, tmp_path / "access.log.1")
    write(log, [line(2, "prod", 200)] * 4, mode="w")
    after = read_new_lines(log, first.cursor)
    assert after.rotated
    assert total_requests(after) == 5
    assert sum(x for _, x in after.counts.per_minute.values()) == 1


def test_copytruncate_rotation_starts_over(tmp_path):
    log = tmp_path / "access.log"
    write(log, [line(9, "prod", 200)] * 50)
    first = read_new_lines(log, None)
    write(log, [line(1, "prod", 503)] * 2, mode="w")  # truncated in place, same inode
    after = read_new_lines(log, first.cursor)
    assert after.rotated
    assert total_requests(after) == 2


def test_first_read_of_a_large_log_reads_only_its_tail_quickly(tmp_path):
    log = tmp_path / "access.log"
    old = line(7000, "prod", 500) + "\n"
    with open(log, "w") as handle:
        handle.write(old * (50 * 1024 * 1024 // len(old)))  # 50 MB, as logrotate allows
        handle.write("".join(line(5, "prod", 200) + "\n" for _ in range(100)))
    started = time.perf_counter()
    result = read_new_lines(log, None, first_read_bytes=256 * 1024)
    elapsed = time.perf_counter() - started
    assert result.bytes_read <= 256 * 1024
    assert result.counts.malformed == 0  # the cut first line is dropped, not counted
    assert result.cursor == LogCursor(os.stat(log).st_ino, os.stat(log).st_size)
    assert elapsed < 1.0


def test_a_burst_larger_than_the_per_run_budget_is_skipped_and_reported(tmp_path):
    log = tmp_path / "access.log"
    write(log, [line(5, "prod", 200)])
    first = read_new_lines(log, None)
    write(log, [line(3, "prod", 200)] * 5000)
    result = read_new_lines(log, first.cursor, max_bytes=64 * 1024)
    assert result.bytes_skipped > 0
    assert result.bytes_read <= 64 * 1024
    assert result.cursor.offset == os.stat(log).st_size


def test_missing_log_keeps_the_cursor(tmp_path):
    cursor = LogCursor(1, 10)
    assert read_new_lines(tmp_path / "absent.log", cursor).cursor == cursor


def test_the_maintenance_pages_503s_are_neither_requests_nor_errors():
    """releases.<env>.maintenance answers 503 on purpose: no 5xx alert for it (the release's
    watch skips those lines the same way: templates/app/release-watch.sh.j2)."""
    counts = count_lines(
        [access_log_line(NOW - 10, "prod", 503, uri="/aiia-maintenance.html")] * 50
        + [line(10, "prod", 200), line(20, "prod", 503)])
    rows = [(m, e, r, x) for (m, e), (r, x) in counts.per_minute.items()]
    assert error_rates(rows, NOW)["prod"]["5m"]["requests"] == 2
    assert error_rates(rows, NOW)["prod"]["5m"]["errors_5xx"] == 1
    assert counts.maintenance == 50 and counts.malformed == 0

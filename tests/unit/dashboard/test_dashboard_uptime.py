"""Uptime % from probe rows, and how gaps between probes count (see dashboard/uptime.py)."""

from __future__ import annotations

import pytest

from dashboard import store
from dashboard.uptime import probe_intervals, timeline, uptime

NOW = 1_800_000_000  # a fixed instant; rows are placed relative to it
HOUR = 3600


def rows(
    start: int,
    end: int,
    every: int = 60,
    down: tuple[int, int] | None = None,
    skip: tuple[int, int] | None = None,
) -> list[tuple[int, bool]]:
    """Probe rows from start to end (exclusive), optionally down in [a, b), missing in [c, d)."""
    out = []
    for ts in range(start, end, every):
        if skip and skip[0] <= ts < skip[1]:
            continue
        out.append((ts, not (down and down[0] <= ts < down[1])))
    return out


def one_hour(probes, first=None):
    return uptime(
        probe_intervals(probes, NOW),
        NOW - HOUR,
        NOW,
        first if first is not None else probes[0][0] if probes else None,
    )


def test_regular_probes_all_up_is_100_percent_with_full_coverage():
    result = one_hour(rows(NOW - HOUR, NOW))
    assert result.percent == 100.0
    assert result.coverage_percent == 100.0
    assert result.gap_seconds == 0


def test_ten_down_minutes_in_an_hour():
    result = one_hour(rows(NOW - HOUR, NOW, down=(NOW - 30 * 60, NOW - 20 * 60)))
    assert result.down_seconds == 600
    assert result.percent == pytest.approx(100 * 3000 / 3600, abs=0.001)


def test_a_gap_counts_neither_up_nor_down_and_lowers_coverage():
    # The collector did not run for 30 minutes; the probes around the gap were all up.
    probes = rows(NOW - HOUR, NOW, skip=(NOW - 40 * 60, NOW - 10 * 60))
    result = one_hour(probes)
    assert result.percent == 100.0
    # The last probe before the gap speaks for 150 s of it (the max gap), the rest is unknown.
    assert result.gap_seconds == pytest.approx(30 * 60 - 150 + 60, abs=1)
    assert result.coverage_percent == pytest.approx(
        100 * (3600 - result.gap_seconds) / 3600, abs=0.01
    )


def test_downtime_inside_partly_observed_window_is_measured_on_observed_time():
    probes = rows(
        NOW - HOUR, NOW, down=(NOW - 10 * 60, NOW - 5 * 60), skip=(NOW - 50 * 60, NOW - 20 * 60)
    )
    result = one_hour(probes)
    observed = result.up_seconds + result.down_seconds
    assert result.down_seconds == 300
    assert result.percent == pytest.approx(100 * (observed - 300) / observed, abs=0.001)
    assert result.coverage_percent < 60


def test_one_late_timer_tick_is_not_a_gap():
    probes = [(NOW - HOUR, True)] + [(ts, True) for ts in range(NOW - HOUR + 140, NOW, 60)]
    result = one_hour(probes)
    assert result.gap_seconds == 0


def test_a_probe_after_the_last_one_speaks_for_at_most_max_gap():
    # The collector stopped: the last probe was 21 minutes ago and speaks for 150 s of them.
    result = one_hour(rows(NOW - HOUR, NOW - 20 * 60))
    assert result.gap_seconds == pytest.approx(21 * 60 - 150, abs=1)


def test_time_before_the_first_probe_ever_is_not_part_of_the_window():
    # Monitoring began two hours ago: the 24 h uptime is over those two hours, fully covered.
    probes = rows(NOW - 2 * HOUR, NOW)
    result = uptime(probe_intervals(probes, NOW), NOW - 24 * HOUR, NOW, probes[0][0])
    assert result.window_start == NOW - 2 * HOUR
    assert result.coverage_percent == 100.0
    assert result.percent == 100.0


def test_a_probe_before_the_window_speaks_into_it():
    probes = [(NOW - HOUR - 30, False)] + rows(NOW - HOUR + 30, NOW)
    result = uptime(probe_intervals(probes, NOW), NOW - HOUR, NOW, NOW - 10 * HOUR)
    assert result.down_seconds == pytest.approx(30)


def test_no_probes_means_no_percentage():
    result = uptime([], NOW - HOUR, NOW, None)
    assert result.percent is None
    assert result.coverage_percent == 0.0


def test_timeline_cells_hold_the_up_share_or_none_for_no_data():
    probes = rows(NOW - HOUR, NOW - 15 * 60, down=(NOW - 45 * 60, NOW - 40 * 60))
    cells = timeline(probe_intervals(probes, NOW), NOW - HOUR, 900, 4)
    assert cells[0] == 1.0
    assert cells[1] == pytest.approx(600 / 900, abs=0.001)
    assert cells[2] == 1.0
    # The last probe speaks 150 s into the last cell only for the first 60 s (probe spacing),
    # then up to the max gap: some data, all up.
    assert cells[3] == 1.0
    assert timeline(probe_intervals(probes, NOW), NOW, 900, 2) == [None, None]


def test_uptime_from_rows_stored_in_sqlite(tmp_path):
    database = tmp_path / "dashboard.sqlite3"
    with store.open_store(database) as db:
        store.insert_probes(
            db,
            [
                store.ProbeRow(ts, "prod", ok, 200 if ok else 503, 12.0)
                for ts, ok in rows(NOW - HOUR, NOW, down=(NOW - 6 * 60, NOW - 3 * 60))
            ],
        )
        stored = store.probes_since(db, "prod", NOW - HOUR)
        first = store.first_probe_ts(db, "prod")
    result = uptime(probe_intervals([(r.ts, r.ok) for r in stored], NOW), NOW - HOUR, NOW, first)
    assert result.down_seconds == 180
    assert result.percent == pytest.approx(95.0)

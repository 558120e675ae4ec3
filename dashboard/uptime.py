"""Uptime from periodic probe rows, and how gaps between probes count.

Each probe speaks for the time until the next probe, but for at most ``max_gap`` seconds
(default 150 s: two and a half one-minute intervals, so one late timer tick is not a gap).
Time that no probe speaks for is a **gap**: the collector did not run (host down, timer
broken, collector crashing). Gaps are counted neither as up nor as down; they are reported
separately as ``coverage`` (share of the window that probes speak for), and the page warns
when coverage is low. Time before the first probe ever recorded is not part of the window
(a dashboard installed yesterday shows 30-day uptime over one day, with its start date).

    uptime % = up time / (up time + down time)
    coverage % = (up time + down time) / (window ∩ [first probe, now])
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MAX_GAP_SECONDS = 150

# (start, end, ok): the time one probe speaks for. Plain tuples: 30 days of one-minute
# probes are 43,200 of them per environment, computed every minute on a small host.
Interval = tuple[float, float, bool]


@dataclass(frozen=True)
class Uptime:
    percent: float | None  # None when no probe speaks for any of the window
    coverage_percent: float
    up_seconds: float
    down_seconds: float
    gap_seconds: float
    window_start: float  # after clipping to the first probe


def probe_intervals(
    probes: Sequence[tuple[float, bool]], now: float, max_gap: float = DEFAULT_MAX_GAP_SECONDS
) -> list[Interval]:
    """(ts, ok) rows sorted by time → the intervals each one speaks for."""
    intervals = []
    last = len(probes) - 1
    for index, (ts, ok) in enumerate(probes):
        next_ts = probes[index + 1][0] if index < last else now
        end = min(next_ts, ts + max_gap, now)
        if end > ts:
            intervals.append((ts, end, bool(ok)))
    return intervals


def _from(intervals: Sequence[Interval], start: float, max_gap: float) -> int:
    """Index of the first interval that can reach ``start`` (they are sorted, ≤ max_gap long)."""
    return bisect_left(intervals, (start - max_gap,))


def uptime(
    intervals: Sequence[Interval],
    window_start: float,
    now: float,
    first_probe: float | None,
    max_gap: float = DEFAULT_MAX_GAP_SECONDS,
) -> Uptime:
    start = window_start if first_probe is None else max(window_start, first_probe)
    up = down = 0.0
    for index in range(_from(intervals, start, max_gap), len(intervals)):
        interval_start, interval_end, ok = intervals[index]
        overlap = min(interval_end, now) - max(interval_start, start)
        if overlap > 0:
            if ok:
                up += overlap
            else:
                down += overlap
    span = max(now - start, 0.0)
    observed = up + down
    return Uptime(
        percent=round(100.0 * up / observed, 3) if observed > 0 else None,
        coverage_percent=round(100.0 * observed / span, 2) if span > 0 else 0.0,
        up_seconds=up,
        down_seconds=down,
        gap_seconds=max(span - observed, 0.0),
        window_start=start,
    )


def timeline(
    intervals: Sequence[Interval],
    start: float,
    step: float,
    buckets: int,
    max_gap: float = DEFAULT_MAX_GAP_SECONDS,
) -> list[float | None]:
    """Uptime share (0..1) per bucket of ``step`` seconds from ``start``; None = no data.

    Used for the per-environment availability strip (24 h in 15-minute cells).
    """
    up = [0.0] * buckets
    observed = [0.0] * buckets
    end = start + step * buckets
    for index in range(_from(intervals, start, max_gap), len(intervals)):
        interval_start, interval_end, ok = intervals[index]
        lo, hi = max(interval_start, start), min(interval_end, end)
        while lo < hi:
            cell = int((lo - start) // step)
            cell_end = min(start + (cell + 1) * step, hi)
            observed[cell] += cell_end - lo
            if ok:
                up[cell] += cell_end - lo
            lo = cell_end
    return [round(u / o, 4) if o > 0 else None for u, o in zip(up, observed, strict=True)]

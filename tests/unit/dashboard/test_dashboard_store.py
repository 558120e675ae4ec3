"""Bounded retention of the collector's history in SQLite."""

from __future__ import annotations

from dashboard import store
from dashboard.config import Retention

NOW = 1_800_000_000
DAY = 86400


def test_pruning_keeps_exactly_the_retention_windows(tmp_path):
    retention = Retention(probe_days=35, host_hours=25, request_hours=25)
    with store.open_store(tmp_path / "d.sqlite3") as db:
        # Probes every 10 minutes for 40 days, host samples and request minutes for 30 hours.
        store.insert_probes(
            db,
            [store.ProbeRow(ts, "prod", True, 200, 5.0) for ts in range(NOW - 40 * DAY, NOW, 600)],
        )
        for ts in range(NOW - 30 * 3600, NOW, 60):
            store.insert_host_sample(db, store.HostSample(ts, 1.0, 50.0, 0.0, 40.0, 0.1, 1, 2))
        store.add_request_counts(
            db, {(m, "prod"): (10, 1) for m in range(NOW - 30 * 3600, NOW, 60)}
        )
        store.add_malformed(db, NOW - 26 * 3600, 3)
        store.add_malformed(db, NOW - 60, 2)

        deleted = store.prune(db, NOW, retention)
        counts = store.row_counts(db)
        oldest_probe = store.first_probe_ts(db, "prod")
        oldest_sample = store.host_samples_since(db, 0)[0].ts

    assert deleted["probes"] == 5 * DAY // 600
    assert counts["probes"] == 35 * DAY // 600
    assert oldest_probe >= NOW - 35 * DAY
    assert counts["host_samples"] == 25 * 60
    assert oldest_sample >= NOW - 25 * 3600
    assert counts["request_minutes"] == 25 * 60
    assert counts["malformed_minutes"] == 1
    with store.open_store(tmp_path / "d.sqlite3") as db:
        assert store.malformed_since(db, 0) == 2


def test_pruning_twice_deletes_nothing_more(tmp_path):
    with store.open_store(tmp_path / "d.sqlite3") as db:
        store.insert_probes(db, [store.ProbeRow(NOW - 40 * DAY, "prod", True)])
        assert store.prune(db, NOW, Retention())["probes"] == 1
        assert store.prune(db, NOW, Retention())["probes"] == 0


def test_request_counts_add_up_across_runs_for_the_same_minute(tmp_path):
    with store.open_store(tmp_path / "d.sqlite3") as db:
        store.add_request_counts(db, {(NOW, "prod"): (5, 1)})
        store.add_request_counts(db, {(NOW, "prod"): (7, 2), (NOW, "staging"): (1, 0)})
        assert store.request_counts_since(db, 0) == [(NOW, "prod", 12, 3), (NOW, "staging", 1, 0)]


def test_thirty_five_days_of_minute_probes_for_two_environments_stay_small(tmp_path):
    path = tmp_path / "d.sqlite3"
    with store.open_store(path) as db:
        for env in ("prod", "staging"):
            store.insert_probes(
                db,
                [store.ProbeRow(ts, env, True, 200, 30.5) for ts in range(NOW - 35 * DAY, NOW, 60)],
            )
    assert path.stat().st_size < 12 * 1024 * 1024

"""Review H3: the nightly file-integrity check's last result on the host tile and its alerts
(dashboard/integrity.py)."""

from __future__ import annotations

import json

from dashboard import alerts
from dashboard.integrity import last_check
from dashboard.timestamps import parse_utc

NOW = parse_utc("2026-12-06T12:00:00Z")
CHANGED = {"kind": "check", "aide_exit": 5, "at": "2026-12-06T02:30:04Z", "entries": 21000,
           "outcome": "changed", "added": 1, "added_paths": ["/usr/local/bin/backdoor"],
           "removed": 0, "removed_paths": [], "changed": 1, "changed_paths": ["/etc/passwd"]}


def integrity_alerts(check) -> list[dict]:
    host = {"memory": {}, "swap": {}, "disk": {}, "load": [0], "cpu": {"count": 1},
            "integrity": check}
    return [a for a in alerts.evaluate({"host": host}, NOW) if a["subject"] == "integrity"]


def test_no_summary_nothing_shown(tmp_path):
    assert last_check(tmp_path / "summary.json") is None
    assert not integrity_alerts(None)


def test_the_summary_is_read_as_the_check_wrote_it(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(CHANGED))
    assert last_check(tmp_path / "summary.json") == CHANGED
    (tmp_path / "summary.json").write_text("{half")
    assert last_check(tmp_path / "summary.json") is None


def test_files_changed_last_night_are_a_warning_naming_them():
    (raised,) = integrity_alerts(CHANGED)
    assert raised["severity"] == "warning"
    assert "1 added, 0 removed, 1 changed" in raised["message"]
    assert "/usr/local/bin/backdoor" in raised["message"]
    assert "journalctl -u aiia-integrity@check" in raised["message"]


def test_an_unchanged_host_raises_nothing_and_a_stale_or_failed_check_warns():
    unchanged = {**CHANGED, "outcome": "unchanged", "aide_exit": 0}
    assert not integrity_alerts(unchanged)
    (stale,) = integrity_alerts({**unchanged, "at": "2026-12-05T02:30:04Z"})
    assert "No file-integrity check since 2026-12-05T02:30:04Z" in stale["message"]
    (failed,) = integrity_alerts({**unchanged, "outcome": "failed", "aide_exit": 137})
    assert "failed" in failed["message"] and "137" in failed["message"]

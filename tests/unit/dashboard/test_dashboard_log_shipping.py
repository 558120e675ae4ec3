"""The host's trail shipped off the host (dashboard/log_shipping.py): the snapshot
`ship-logs.sh tick` writes, read as the collector reads it, and each alert rule at its edge."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dashboard import log_shipping
from dashboard.alerts import evaluate
from dashboard.timestamps import format_utc
from tests.unit.dashboard.test_dashboard_alerts import healthy

NOW = 1_800_000_000.0
ROOT = Path("/srv/aiia")
TEMPLATE = Path(__file__).resolve().parents[3] / "templates/logs/ship-logs.sh.j2"


def snapshot(**change) -> dict:
    """What a tick writes on a VPS with an off-host target, everything shipped."""
    return {"format": 1, "updated_at": format_utc(NOW - 30), "configured": True,
            "host_logs": True, "note": "", "last_shipped_at": format_utc(NOW - 40),
            "pending": 0, "pending_bytes": 0, "pending_cap_bytes": 64 << 20, "held": None,
            "refused": 0, "problem": None, "skipped": 0, "last_skipped": None, **change}


def found(tmp_path: Path, **change) -> list[tuple[str, str]]:
    path = tmp_path / "log-shipping.json"
    path.write_text(json.dumps(snapshot(**change)))
    section = log_shipping.summarize(path, ROOT)
    return [(a["severity"], a["subject"]) for a in log_shipping.alerts(section, NOW)]


def test_the_fields_read_are_the_ones_the_tick_writes():
    heredoc = TEMPLATE.read_text().split("<<JSON", 1)[1].split("\nJSON", 1)[0]
    written = set(re.findall(r'"(\w+)":', heredoc))
    assert set(snapshot()) == written


def test_a_host_that_ships_its_trail_has_nothing_to_say(tmp_path):
    assert found(tmp_path) == []
    # Before the first tick there is no file: no section, no alert.
    assert log_shipping.summarize(tmp_path / "absent.json", ROOT) is None
    assert log_shipping.alerts(None, NOW) == []


@pytest.mark.parametrize("change", [{"configured": False}, {"host_logs": False}])
def test_nothing_is_said_where_nothing_is_shipped(tmp_path, change):
    # No off-host target, or a developer's machine: even a stale tick is not news.
    assert found(tmp_path, updated_at=format_utc(NOW - 3600), **change) == []


def test_a_tick_that_stopped_is_critical(tmp_path):
    edge = log_shipping.TICK_STALE_S
    assert found(tmp_path, updated_at=format_utc(NOW - edge + 1)) == []
    assert found(tmp_path, updated_at=format_utc(NOW - edge - 1)) == [
        ("critical", "log shipping")]


def test_chunks_that_wait_past_five_minutes_warn_with_the_reason(tmp_path):
    edge = log_shipping.BEHIND_S
    waiting = {"pending": 3, "pending_bytes": 4096, "problem": "ssh: connect to host refused"}
    assert found(tmp_path, last_shipped_at=format_utc(NOW - edge + 1), **waiting) == []
    assert found(tmp_path, last_shipped_at=format_utc(NOW - edge - 1), **waiting) == [
        ("warning", "log shipping backlog")]
    assert found(tmp_path, last_shipped_at=None, **waiting) == [
        ("warning", "log shipping backlog")]
    # A quiet host has nothing to send: an old last shipment alone says nothing.
    assert found(tmp_path, last_shipped_at=format_utc(NOW - 3600)) == []
    path = tmp_path / "log-shipping.json"
    path.write_text(json.dumps(snapshot(last_shipped_at=None, **waiting)))
    (alert,) = log_shipping.alerts(log_shipping.summarize(path, ROOT), NOW)
    assert "3 chunk(s)" in alert["message"] and "ssh: connect to host refused" in alert["message"]
    assert "sudo /srv/aiia/bin/ship-logs.sh status" in alert["message"]


def test_a_held_export_refused_or_skipped_chunks_are_named(tmp_path):
    assert found(tmp_path, held="64 MB wait: nothing new is exported") == [
        ("warning", "log shipping backlog")]
    assert found(tmp_path, refused=2) == [("critical", "log shipping refused")]
    assert found(tmp_path, skipped=1, last_skipped="audit.log.3 rotated away") == [
        ("warning", "log shipping skipped")]


@pytest.mark.parametrize("content", [b"{not json", b"[]", json.dumps({"format": 2}).encode(),
                                     b" " * (log_shipping.MAX_BYTES + 1)])
def test_an_unreadable_snapshot_is_a_warning_not_a_failure(tmp_path, content):
    path = tmp_path / "log-shipping.json"
    path.write_bytes(content)
    (alert,) = log_shipping.alerts(log_shipping.summarize(path, ROOT), NOW)
    assert alert["severity"] == "warning" and alert["subject"] == "log-shipping.json"


def test_the_page_and_the_notifier_get_the_alert_from_the_status():
    status = healthy()
    status["log_shipping"] = {"status_command": "sudo /srv/aiia/bin/ship-logs.sh status",
                              "error": None,
                              "state": log_shipping.normalize(snapshot(refused=1))}
    assert ("critical", "host", "log shipping refused") in [
        (a["severity"], a["area"], a["subject"]) for a in evaluate(status, NOW)]

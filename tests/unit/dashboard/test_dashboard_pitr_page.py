"""The PITR cards on the page: dashboard/static/pitr.js run in Node on the section the
collector builds and the alerts dashboard/pitr.py raises on it. (That the cards reach the
DOM of a real browser, under the CSP, is tests/e2e/test_dashboard_browser.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from dashboard import pitr
from dashboard.timestamps import format_utc
from tests.harness.dashboard_status import REPO_ROOT
from tests.unit.dashboard.conftest import pitr_drill
from tests.unit.dashboard.test_dashboard_pitr_alerts import NOW, at, section

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js (tests/run.sh installs it)")
PITR_JS = REPO_ROOT / "dashboard" / "static" / "pitr.js"
# app.js passes its own formatters; these say plainly which one made a value.
RUN = """
const cards = require(process.argv[1]).cards;
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const none = (v) => v === null || v === undefined;
const fmt = { ago: (t) => "ago(" + t + ")", utc: (t) => "utc(" + t + ")",
              mib: (b) => none(b) ? "—" : b + " B", duration: (s) => none(s) ? "—" : s + " s" };
process.stdout.write(JSON.stringify(cards(input.pitr, input.alerts, fmt)));
"""


def cards(pitr_section: dict | None) -> list[dict]:
    alerts = pitr.alerts(pitr_section, NOW)
    result = subprocess.run(
        [NODE, "-e", RUN, str(PITR_JS)], input=json.dumps({"pitr": pitr_section, "alerts": alerts}),
        capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


def card(found: list[dict], title: str) -> dict:
    return next(c for c in found if c["title"] == title)


def row(found: list[dict], title: str, label: str) -> dict:
    return next(r for r in card(found, title)["rows"] if r["label"] == label)


def test_no_section_no_cards():
    assert cards(None) == []


def test_all_well_three_green_cards_with_what_an_operator_asks_first():
    found = cards(section())
    assert [(c["title"], c["level"], c["badge"]) for c in found] == [
        ("WAL archive", "ok", "archiving"), ("Restore window", "ok", "restorable"),
        ("PITR drill", "ok", "succeeded")]
    assert row(found, "WAL archive", "Last archived")["value"] == (
        f"ago({at(20)}) · utc({at(20)}) · 000000010000000000000012")
    assert row(found, "WAL archive", "Waiting")["value"] == "nothing waits"
    assert row(found, "WAL archive", "Last failure")["value"] == "none"
    assert row(found, "WAL archive", "Off-host copy")["value"] == (
        f"last shipped ago({at(40)}) · utc({at(40)}) · 0 pending")
    assert row(found, "Restore window", "From")["value"] == f"utc({at(7 * 86400)})"
    assert row(found, "Restore window", "To")["value"] == f"utc({at(20)}) (ago({at(20)}))"
    assert row(found, "Restore window", "Last base backup")["value"].endswith("20261207T033000Z")
    assert "0000000100000000000000A3: disk reserve reached" in row(
        found, "Restore window", "Gaps")["value"]
    assert row(found, "PITR drill", "Achieved RPO") == {
        "label": "Achieved RPO", "value": "42.0 s (target 60 s)", "level": ""}
    assert row(found, "PITR drill", "Restore time")["value"] == "61.3 s"
    assert all(r["level"] == "" for c in found for r in c["rows"])


def test_an_archive_behind_colours_its_rows_from_the_alert():
    found = cards(section(lambda s: s["archive"].update(
        waiting_segments=3, oldest_waiting_since=at(400), last_failed_at=at(30),
        last_failed_wal="000000010000000000000013")))
    archive = card(found, "WAL archive")
    assert (archive["level"], archive["badge"]) == ("critical", "behind")
    assert row(found, "WAL archive", "Waiting") == {
        "label": "Waiting", "level": "critical",
        "value": f"3 segment(s), the oldest since ago({at(400)}) · utc({at(400)})"}
    assert row(found, "WAL archive", "Last failure")["value"].endswith("000000010000000000000013")


def test_off_host_copies_waiting_and_no_target_at_all():
    found = cards(section(lambda s: s["off_host"].update(pending=5, last_shipped_at=at(900))))
    assert row(found, "WAL archive", "Off-host copy")["level"] == "warning"
    assert card(found, "WAL archive")["level"] == "warning"
    unset = cards(section(lambda s: s["off_host"].update(configured=False)))
    assert row(unset, "WAL archive", "Off-host copy")["value"].startswith("not configured")


def test_a_broken_chain_and_an_old_base_backup_show_on_the_window():
    def change(s):
        s["base"].update(last_at=at(27 * 3600))
        s["gaps"].append({"at": at(3600), "wal": "0000000100000000000000B7", "reason": "r"})

    found = cards(section(change))
    window = card(found, "Restore window")
    assert (window["level"], window["badge"]) == ("warning", "chain broken")
    assert row(found, "Restore window", "Gaps")["level"] == "warning"
    assert row(found, "Restore window", "Gaps")["value"].startswith(
        f"utc({at(3600)}) 0000000100000000000000B7")
    assert row(found, "Restore window", "Last base backup")["level"] == "warning"


def test_a_stale_tick_says_the_values_are_old():
    found = cards(section(lambda s: s.update(updated_at=at(600))))
    archive = card(found, "WAL archive")
    assert (archive["level"], archive["badge"]) == ("critical", "stale")
    assert archive["note"].startswith(f"pitr.json last rewritten ago({at(600)})")


def test_a_failed_drill_shows_why_and_the_last_good_one():
    good = pitr_drill(NOW, 20)
    failed = pitr_drill(NOW, 1, "failed", rpo_seconds=None, restore_seconds=None,
                        reason="marker missing")
    found = cards(section(drills=[good, failed]))
    drill = card(found, "PITR drill")
    assert (drill["level"], drill["badge"]) == ("critical", "failed")
    assert row(found, "PITR drill", "Reason") == {
        "label": "Reason", "value": "marker missing", "level": "critical"}
    assert row(found, "PITR drill", "Achieved RPO")["value"] == "—"
    assert row(found, "PITR drill", "Last good")["value"].startswith(
        f"ago({good['started_at']})")


def test_an_achieved_rpo_past_the_target_is_marked():
    found = cards(section(drills=[pitr_drill(NOW, 3, rpo_seconds=75.5)]))
    assert row(found, "PITR drill", "Achieved RPO") == {
        "label": "Achieved RPO", "value": "75.5 s (target 60 s)", "level": "warning"}


def test_an_unreadable_snapshot_and_pitr_off_say_so_and_keep_the_drill():
    broken = {**section(), "state": None, "error": "pitr.json is not valid JSON"}
    found = cards(broken)
    assert [(c["title"], c["badge"]) for c in found] == [
        ("WAL archive", "unreadable"), ("PITR drill", "succeeded")]
    assert card(found, "WAL archive")["note"] == "pitr.json is not valid JSON"
    off = cards({**section(), "state": None})
    assert card(off, "WAL archive")["badge"] == "off"
    assert format_utc(NOW - 9 * 86400) in row(off, "PITR drill", "Last run")["value"]


def test_an_unreadable_drills_file_is_said_on_the_drill_card():
    broken = section(drills=[])
    broken["drills"]["error"] = "cannot read /srv/aiia/state/pitr-drills.jsonl: Permission denied"
    drill = card(cards(broken), "PITR drill")
    assert drill["note"] == broken["drills"]["error"]

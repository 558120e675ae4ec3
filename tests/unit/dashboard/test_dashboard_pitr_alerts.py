"""What of point-in-time recovery needs attention (dashboard/pitr.py), each rule at its edge:
one second inside the limit is quiet, one second past it alerts."""

from __future__ import annotations

import copy
import json

import pytest

from dashboard import notify, pitr, records
from dashboard.alerts import evaluate
from dashboard.notify_config import parse_notify
from dashboard.timestamps import format_utc
from tests.unit.dashboard.conftest import pitr_drill, pitr_snapshot
from tests.unit.dashboard.test_dashboard_alerts import healthy
from tests.unit.dashboard.test_dashboard_notify import RAW, SECRETS, Recorder, with_files

NOW = 1_800_000_000.0
FIVE_MIN = 300


def section(change=None, drills=None, stack: str | None = "prod") -> dict:
    """The status's pitr section as the collector builds it from the files."""
    snapshot = copy.deepcopy(pitr_snapshot(NOW))
    if change is not None:
        change(snapshot)
    lines = [json.dumps(d) for d in (drills if drills is not None else [pitr_drill(NOW, 9)])]
    return {"stack": stack, "state": pitr.normalize(snapshot), "error": None,
            "drills": records.summarize_jobs(records.parse_records(lines))}


def found(pitr_section: dict) -> list[tuple[str, str]]:
    return [(a["severity"], a["subject"]) for a in pitr.alerts(pitr_section, NOW)]


def message(pitr_section: dict, subject: str) -> str:
    return next(a["message"] for a in pitr.alerts(pitr_section, NOW) if a["subject"] == subject)


def at(seconds_ago: float) -> str:
    return format_utc(NOW - seconds_ago)


def test_all_well_is_quiet_on_the_page_and_for_the_notifier():
    status = {**healthy(), "pitr": section()}
    assert evaluate(status, NOW) == []


def test_no_section_or_pitr_off_is_quiet_even_with_old_failures():
    assert pitr.alerts(None, NOW) == []
    old = [pitr_drill(NOW, 90, "failed", reason="x")]
    assert found({**section(drills=old), "state": None}) == []  # no pitr.json: PITR is off
    assert found(section(lambda s: s.update(enabled=False, updated_at=at(86400)), old)) == []


def test_a_segment_waiting_over_5_minutes_is_critical():
    def waiting(seconds):
        return lambda s: s["archive"].update(waiting_segments=3, oldest_waiting_since=at(seconds))

    assert found(section(waiting(FIVE_MIN))) == []
    assert found(section(waiting(FIVE_MIN + 1))) == [("critical", "WAL archive")]
    text = message(section(waiting(FIVE_MIN + 1)), "WAL archive")
    assert "3 segment(s) wait" in text and "make pitr-status STACK=prod" in text


def test_a_failure_after_the_last_success_alerts_once_that_success_is_5_minutes_old():
    def failing(success_ago, failure_ago):
        return lambda s: s["archive"].update(
            last_archived_at=at(success_ago), last_failed_at=at(failure_ago),
            last_failed_wal="000000010000000000000013")

    # The archiver retries every minute, so the failure itself stays fresh: the success's
    # age is what says how long the archive has been stuck.
    assert found(section(failing(FIVE_MIN, 10))) == []
    assert found(section(failing(FIVE_MIN + 1, 10))) == [("critical", "WAL archive")]
    assert "000000010000000000000013" in message(section(failing(FIVE_MIN + 1, 10)),
                                                 "WAL archive")
    # An old failure that a success has since overtaken is history, not news.
    assert found(section(failing(FIVE_MIN + 60, FIVE_MIN + 120))) == []
    never = section(lambda s: s["archive"].update(last_archived_at=None, last_failed_at=at(10)))
    assert found(never) == [("critical", "WAL archive")]
    assert "last archived never" in message(never, "WAL archive")


def test_a_tick_silent_over_5_minutes_is_critical_and_speaks_alone_for_the_stale_file():
    def stale(seconds):
        return lambda s: s.update(updated_at=at(seconds))

    assert found(section(stale(FIVE_MIN))) == []
    assert found(section(stale(FIVE_MIN + 1))) == [("critical", "PITR tick")]
    assert "make pitr-status STACK=prod" in message(section(stale(FIVE_MIN + 1)), "PITR tick")

    # Its values are as old as the file: a segment "waiting" in it says nothing about now.
    def stale_and_waiting(s):
        s.update(updated_at=at(3600))
        s["archive"].update(waiting_segments=1, oldest_waiting_since=at(3620))

    assert found(section(stale_and_waiting)) == [("critical", "PITR tick")]
    assert found(section(lambda s: s.update(updated_at=None))) == [("critical", "PITR tick")]


def test_a_gap_newer_than_the_last_base_backup_warns_and_says_take_one():
    def gap(base_ago, gap_ago):
        def change(s):
            s["base"].update(last_at=at(base_ago))
            s["gaps"].append({"at": at(gap_ago), "wal": "0000000100000000000000B7",
                              "reason": "archive target unreachable for 6 h"})
        return change

    assert found(section(gap(3600, 3600))) == []  # the base backup taken at the gap mends it
    assert found(section(gap(3600, 3599))) == [("warning", "WAL chain")]
    text = message(section(gap(3600, 3599)), "WAL chain")
    assert "0000000100000000000000B7" in text and "archive target unreachable" in text
    assert "make pitr-base STACK=prod" in text


def test_copies_waiting_to_leave_the_host_over_5_minutes_warn():
    def shipped(seconds, pending=2, configured=True):
        return lambda s: s["off_host"].update(last_shipped_at=at(seconds) if seconds else None,
                                              pending=pending, configured=configured)

    assert found(section(shipped(FIVE_MIN))) == []
    assert found(section(shipped(FIVE_MIN + 1))) == [("warning", "off-host copy")]
    assert found(section(shipped(None))) == [("warning", "off-host copy")]
    assert found(section(shipped(3600, pending=0))) == []  # nothing to ship
    assert found(section(shipped(3600, configured=False))) == []
    assert "2 archive file(s)" in message(section(shipped(FIVE_MIN + 1)), "off-host copy")


def test_a_failed_drill_is_critical_with_its_reason():
    drills = [pitr_drill(NOW, 20), pitr_drill(NOW, 1, "failed", rpo_seconds=None,
                                                reason="marker missing: restored to 10:42:13")]
    assert found(section(drills=drills)) == [("critical", "PITR drill")]
    text = message(section(drills=drills), "PITR drill")
    assert "marker missing" in text and "make pitr-drill STACK=prod" in text
    assert "the last good one" in text


def test_no_successful_drill_in_35_days_warns_once_base_backups_exist():
    limit = 35 * 86400
    # pitr_drill's run finishes 70 s after it starts; the age counts from the finish.
    assert found(section(drills=[pitr_drill(NOW, (limit + 70) / 86400)])) == []
    assert found(section(drills=[pitr_drill(NOW, (limit + 71) / 86400)])) == [
        ("warning", "PITR drill")]
    assert found(section(drills=[])) == [("warning", "PITR drill")]
    assert "make pitr-drill STACK=prod" in message(section(drills=[]), "PITR drill")

    def no_base(s):
        s["base"].update(count=0, last_at=None)

    assert ("warning", "PITR drill") not in found(section(no_base, drills=[]))


def test_no_base_backup_in_26_hours_warns_and_says_take_one():
    limit = 26 * 3600
    assert found(section(lambda s: s["base"].update(last_at=at(limit)))) == []
    late = section(lambda s: s["base"].update(last_at=at(limit + 1)))
    assert found(late) == [("warning", "base backup")]
    assert "make pitr-base STACK=prod" in message(late, "base backup")
    assert found(section(lambda s: s["base"].update(last_at=None))) == [("warning", "base backup")]


def test_an_unreadable_snapshot_is_critical_the_archive_state_being_unknown():
    broken = {**section(), "state": None, "error": "/srv/aiia/state/pitr.json is not valid JSON"}
    assert found(broken) == [("critical", "pitr.json")]
    assert "make pitr-status STACK=prod" in message(broken, "pitr.json")


@pytest.mark.parametrize("stack", [None, "staging"])
def test_the_commands_name_the_stack_or_say_where_it_goes(stack):
    text = message(section(lambda s: s["base"].update(last_at=None), stack=stack), "base backup")
    assert f"make pitr-base STACK={stack or '<stack>'}" in text


def test_every_rule_reaches_the_page_and_the_notifier_through_evaluate():
    def everything(s):
        s.update(updated_at=at(10))
        s["archive"].update(waiting_segments=1, oldest_waiting_since=at(FIVE_MIN + 1))
        s["off_host"].update(pending=4, last_shipped_at=at(3600))
        s["base"].update(last_at=at(30 * 3600))
        s["gaps"].append({"at": at(3600), "wal": "B", "reason": "r"})

    drills = [pitr_drill(NOW, 1, "failed", reason="r")]
    alerts = [a for a in evaluate({**healthy(), "pitr": section(everything, drills)}, NOW)]
    assert [(a["severity"], a["subject"]) for a in alerts] == [
        ("critical", "WAL archive"), ("critical", "PITR drill"), ("warning", "off-host copy"),
        ("warning", "base backup"), ("warning", "WAL chain")]
    # The notifier tracks an alert by area and subject: one alert per subject, never two.
    assert len({(a["area"], a["subject"]) for a in alerts}) == len(alerts)


def test_the_notifier_sends_a_pitr_alert_once_it_holds_to_the_critical_channel_too(tmp_path):
    settings = with_files(parse_notify(RAW, SECRETS, "test"), tmp_path)
    sender = Recorder()
    behind = section(lambda s: s["archive"].update(waiting_segments=2,
                                                   oldest_waiting_since=at(FIVE_MIN + 1)))
    for minute in (0, 60):  # held for two collections (hold_collections: 2)
        notify.run(settings, {**healthy(), "pitr": behind}, int(NOW) + minute, sender)
    [[event]] = sender.sent["pager"]  # the channel that takes critical alerts only
    assert (event["kind"], event["area"], event["subject"]) == ("firing", "pitr", "WAL archive")
    assert "make pitr-status STACK=prod" in event["message"]

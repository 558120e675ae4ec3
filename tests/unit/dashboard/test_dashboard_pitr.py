"""Reading pitr.sh's files (issue #30): pitr.json and pitr-drills.jsonl into the status's
`pitr` section, whatever state the files are in, and through the collector to the page."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest

from dashboard import pitr
from dashboard.collector import collect_once
from dashboard.config import ConfigError, load_config, parse_config
from dashboard.server import Dashboard
from dashboard.timestamps import format_utc
from tests.harness import dashboard_status as fixtures
from tests.unit.dashboard.conftest import pitr_drill, pitr_snapshot
from tests.unit.dashboard.test_dashboard_config import render, template_variables

NOW = 1_800_000_000.0


def write(directory: Path, snapshot: dict | str | None, drills: list[dict | str] = ()) -> Path:
    if snapshot is not None:
        text = snapshot if isinstance(snapshot, str) else json.dumps(snapshot)
        (directory / "pitr.json").write_text(text)
    if drills:
        lines = [d if isinstance(d, str) else json.dumps(d) for d in drills]
        (directory / "pitr-drills.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def summary(directory: Path, stack: str | None = "prod") -> dict | None:
    return pitr.summarize(directory / "pitr.json", directory / "pitr-drills.jsonl", stack)


def test_a_snapshot_is_read_field_by_field_newest_gap_first(tmp_path):
    snapshot = pitr_snapshot(NOW)
    an_hour_ago = format_utc(NOW - 3600)
    snapshot["gaps"].append({"at": an_hour_ago.replace("Z", "+00:00"),
                             "wal": "0000000100000000000000F0",
                             "reason": "archive target unreachable"})
    section = summary(write(tmp_path, snapshot))
    state = section["state"]
    assert section["error"] is None and section["stack"] == "prod"
    assert state["enabled"] is True and state["window_days"] == 7 and state["rpo_seconds"] == 60
    assert state["archive"] == {
        "last_archived_at": format_utc(NOW - 20),
        "last_archived_wal": "000000010000000000000012",
        "last_failed_at": None,
        "last_failed_wal": "",
        "waiting_segments": 0,
        "oldest_waiting_since": None,
    }
    assert state["off_host"] == {"configured": True, "last_shipped_at": format_utc(NOW - 40),
                                 "pending": 0}
    assert state["base"]["last_id"] == "20261207T033000Z" and state["base"]["count"] == 8
    assert state["window"] == {"from": format_utc(NOW - 7 * 86400), "to": format_utc(NOW - 20)}
    # A "+00:00" time reads as the same instant, written the way every shared file writes it.
    assert [g["at"] for g in state["gaps"]] == [an_hour_ago, format_utc(NOW - 2 * 86400)]
    assert state["gap_count"] == 2


def test_no_files_is_no_section(tmp_path):
    assert summary(tmp_path) is None


def test_drills_without_a_snapshot_still_show(tmp_path):
    section = summary(write(tmp_path, None, [pitr_drill(NOW, 3)]))
    assert section["state"] is None and section["error"] is None
    assert section["drills"]["last"]["rpo_seconds"] == 42.0


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"format": 1, "updated_at": "2026-12-07T01:02:03Z", "enabled": tr', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"format": 2, "enabled": true}', "format 2"),
        ('{"enabled": true}', "format None"),
    ],
)
def test_a_torn_or_foreign_snapshot_is_an_error_not_a_crash(tmp_path, content, words):
    section = summary(write(tmp_path, content, [pitr_drill(NOW, 3)]))
    assert section["state"] is None
    assert words in section["error"] and str(tmp_path / "pitr.json") in section["error"]
    assert section["drills"]["total"] == 1  # the drills still show


def test_an_unreadable_or_runaway_snapshot_is_an_error(tmp_path):
    (tmp_path / "pitr.json").mkdir()
    assert "cannot read" in summary(tmp_path)["error"]
    (tmp_path / "pitr.json").rmdir()
    write(tmp_path, json.dumps({**pitr_snapshot(NOW), "pad": "x" * pitr.MAX_BYTES}))
    assert "over 1024 KB" in summary(tmp_path)["error"]


@pytest.mark.parametrize(
    ("change", "path", "read_as"),
    [
        (lambda s: s.update(enabled="yes"), ("enabled",), False),
        (lambda s: s.update(updated_at="2026-12-07 01:02:03"), ("updated_at",), None),  # no zone
        (lambda s: s["archive"].update(waiting_segments="3"), ("archive", "waiting_segments"),
         None),
        (lambda s: s["archive"].update(waiting_segments=True), ("archive", "waiting_segments"),
         None),
        (lambda s: s["off_host"].update(pending=-1), ("off_host", "pending"), None),
        (lambda s: s["off_host"].update(configured=1), ("off_host", "configured"), False),
        (lambda s: s.update(base=[]), ("base", "last_at"), None),
        (lambda s: s.update(rpo_seconds=float("nan")), ("rpo_seconds",), None),
        (lambda s: s.update(gaps={"at": "x"}), ("gaps",), []),
        (lambda s: s["archive"].update(last_archived_wal=12), ("archive", "last_archived_wal"), ""),
    ],
)
def test_a_field_of_the_wrong_type_reads_as_absent(change, path, read_as):
    snapshot = copy.deepcopy(pitr_snapshot(NOW))
    change(snapshot)
    value = pitr.normalize(snapshot)
    for key in path:
        value = value[key]
    assert value == read_as


def test_drills_like_backups_a_torn_line_is_skipped_and_counted(tmp_path):
    good = pitr_drill(NOW, 33)
    failed = pitr_drill(NOW, 2, "failed", rpo_seconds=None, restore_seconds="61",
                        marker_at=None, reason="no marker within 5 min of the target")
    torn = json.dumps(pitr_drill(NOW, 1))[:40]
    drills = summary(write(tmp_path, pitr_snapshot(NOW), [good, failed, torn]))["drills"]
    assert drills["malformed_lines"] == 1 and drills["total"] == 2
    assert drills["last"]["outcome"] == "failed"
    assert drills["last"]["reason"] == "no marker within 5 min of the target"
    assert drills["last"]["rpo_seconds"] is None and drills["last"]["restore_seconds"] is None
    assert drills["last_good"]["id"] == good["id"]
    assert drills["last_good"]["rpo_seconds"] == 42.0 and drills["last_good"]["duration_s"] == 70


def test_the_files_sit_beside_backups_jsonl_and_the_stack_is_optional(tmp_path):
    raw = json.loads(render(**template_variables()))
    config = parse_config(raw)
    assert config.pitr_file == Path("/srv/aiia/state/pitr.json")
    assert config.pitr_drills_file == Path("/srv/aiia/state/pitr-drills.jsonl")
    assert config.pulumi_stack is None
    assert parse_config({**raw, "pulumi_stack": "prod"}).pulumi_stack == "prod"
    with pytest.raises(ConfigError, match="pulumi_stack"):
        parse_config({**raw, "pulumi_stack": "prod; rm -rf /"})


def test_the_collector_puts_it_in_the_status_and_the_page_alerts_on_it(tmp_path):
    with fixtures.realistic_host(tmp_path) as host:
        config = load_config(host.state.collector_config_path)
        now = time.time()
        snapshot = pitr_snapshot(now)
        snapshot["archive"].update(waiting_segments=3, oldest_waiting_since=format_utc(now - 600))
        write(config.backups_file.parent, snapshot, [pitr_drill(now, 3)])
        status = collect_once(config, now=now)
        assert status["pitr"]["state"]["archive"]["waiting_segments"] == 3
        assert status["pitr"]["drills"]["last"]["restore_seconds"] == 61.3
        page = Dashboard(config, clock=lambda: now).status()
        assert page["pitr"] == status["pitr"]
        behind = [a for a in page["alerts"] if a["area"] == "pitr"]
        assert [(a["severity"], a["subject"]) for a in behind] == [("critical", "WAL archive")]
        assert page["overall"] == "critical"

"""Release, backup and restore-test records (JSONL, docs/architecture.md)."""

from __future__ import annotations

import json

from dashboard.records import parse_records, read_records, summarize_jobs, summarize_releases
from tests.harness.dashboard_status import backup_records, release_records, restore_records

NOW = 1_800_000_000.0


def jsonl(records) -> list[str]:
    return [json.dumps(r) for r in records]


def test_the_latest_line_per_id_wins_and_keeps_its_place():
    lines = [
        '{"id":"prod-1","environment":"prod","release":"a","outcome":"in_progress",'
        '"started_at":"2027-01-10T10:00:00Z"}',
        '{"id":"prod-2","environment":"prod","release":"b","outcome":"succeeded",'
        '"started_at":"2027-01-11T10:00:00Z"}',
        '{"id":"prod-1","outcome":"failed_health_check","reason":"unhealthy after 120 s",'
        '"finished_at":"2027-01-10T10:03:00Z"}',
    ]
    parsed = parse_records(lines)
    assert [r["id"] for r in parsed.records] == ["prod-1", "prod-2"]
    first = parsed.records[0]
    assert first["outcome"] == "failed_health_check"
    assert first["release"] == "a"  # fields from the first line survive the completion line
    assert first["reason"] == "unhealthy after 120 s"


def test_malformed_lines_are_skipped_and_counted():
    lines = ["{broken", "[1, 2]", '{"no_id": true}', '{"id": 7}', "", '{"id":"ok"}']
    parsed = parse_records(lines)
    assert parsed.malformed_lines == 4
    assert [r["id"] for r in parsed.records] == ["ok"]


def test_last_attempt_and_live_release_per_environment_and_history(tmp_path):
    records = release_records(NOW)
    path = tmp_path / "releases.jsonl"
    lines = jsonl(records)
    last = records[-1]
    lines.insert(-1, json.dumps({**last, "outcome": "in_progress", "finished_at": None}))
    path.write_text("\n".join(lines) + "\n")
    summary = summarize_releases(read_records(path), ["prod", "staging"], history_limit=5)
    staging = summary["by_environment"]["staging"]
    assert staging["last_attempt"]["release"] == "2026.11.26-2"
    assert staging["last_attempt"]["outcome"] == "failed_health_check"
    assert staging["last_attempt"]["failed"] is True
    assert staging["last_attempt"]["duration_s"] == 131
    assert staging["live"]["release"] == "2026.11.25-3"  # the failed one never took traffic
    prod = summary["by_environment"]["prod"]
    assert prod["last_attempt"]["release"] == prod["live"]["release"] == "2026.11.25-1"
    assert summary["total"] == len(records)
    assert [r["release"] for r in summary["history"]] == [
        "2026.11.26-2",
        "2026.11.25-1",
        "2026.11.25-3",
        "2026.11.24-1",
        "2026.11.24-2",
    ]


def test_an_environment_without_releases_is_listed_empty_and_unknown_outcomes_are_flagged():
    lines = [
        '{"id":"x","environment":"prod","release":"r","outcome":"exploded",'
        '"started_at":"2027-01-10T10:00:00Z"}'
    ]
    summary = summarize_releases(parse_records(lines), ["prod", "staging"])
    assert summary["by_environment"]["staging"] == {"last_attempt": None, "live": None}
    assert summary["by_environment"]["prod"]["last_attempt"]["outcome"] == "unknown"
    assert summary["by_environment"]["prod"]["live"] is None


def test_a_backup_is_only_good_when_verified():
    runs = backup_records(NOW)
    runs[-1] = {**runs[-1], "verified": False}
    summary = summarize_jobs(parse_records(jsonl(runs)), needs_verification=True)
    assert summary["last"]["id"] == runs[-1]["id"]
    assert summary["last_good"]["id"] == runs[-2]["id"]
    assert summary["history"][0]["id"] == runs[-1]["id"]
    assert summary["total"] == 10


def test_restore_tests_last_and_last_good():
    runs = restore_records(NOW)
    summary = summarize_jobs(parse_records(jsonl(runs[:2])))
    assert summary["last"]["outcome"] == "failed"
    assert "role" in summary["last"]["reason"]
    assert summary["last_good"]["id"] == runs[0]["id"]


def test_a_missing_file_is_no_records_and_no_error(tmp_path):
    parsed = read_records(tmp_path / "none.jsonl")
    assert parsed.records == [] and parsed.error is None


def test_only_the_tail_of_a_huge_file_is_read(tmp_path):
    path = tmp_path / "releases.jsonl"
    old = '{"id":"old-%d","environment":"prod","release":"x","outcome":"succeeded"}\n'
    path.write_text(
        "".join(old % i for i in range(40000))
        + '{"id":"newest","environment":"prod","release":"y","outcome":"succeeded"}\n'
    )
    parsed = read_records(path, tail_bytes=64 * 1024)
    assert parsed.records[-1]["id"] == "newest"
    assert parsed.malformed_lines == 0  # the cut first line is dropped, not counted
    assert len(parsed.records) < 1000

"""Release, backup and restore-test records: the JSONL files of docs/architecture.md.

Appended by the release commands and the backup/restore jobs, one JSON object per line.
Lines that are not JSON objects with an ``id`` are skipped and counted, never fatal: the
dashboard must still show the rest when one writer was interrupted mid-line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .timestamps import parse_utc

RELEASE_OUTCOMES = (
    "in_progress",
    "succeeded",
    "failed_health_check",
    "failed_migration",
    "switched_back",
    "failed",
)
FAILED_RELEASE_OUTCOMES = ("failed_health_check", "failed_migration", "switched_back", "failed")
TAIL_BYTES = 1 << 20  # years of daily records; a runaway file cannot cost more than this


@dataclass(frozen=True)
class RecordFile:
    records: list[dict[str, Any]]  # in file order, the latest line per id kept
    malformed_lines: int
    error: str | None = None


def read_records(path: Path, tail_bytes: int = TAIL_BYTES) -> RecordFile:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - tail_bytes))
            data = handle.read()
    except FileNotFoundError:
        return RecordFile([], 0, error=None)  # no record yet is a state, not an error
    except OSError as error:
        return RecordFile([], 0, error=f"cannot read {path}: {error.strerror}")
    lines = data.split(b"\n")
    if size > tail_bytes:
        lines = lines[1:]  # the first line of a tail read is a fragment
    return parse_records(lines)


def parse_records(lines: list[bytes] | list[str]) -> RecordFile:
    """Latest line per ``id`` wins; it takes the position of the id's first line."""
    by_id: dict[str, dict[str, Any]] = {}
    malformed = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            malformed += 1
            continue
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            malformed += 1
            continue
        if record["id"] in by_id:
            by_id[record["id"]].update(record)
        else:
            by_id[record["id"]] = dict(record)
    return RecordFile(list(by_id.values()), malformed)


def _started(record: dict[str, Any]) -> float:
    return parse_utc(record.get("started_at")) or parse_utc(record.get("finished_at")) or 0.0


def _duration(record: dict[str, Any]) -> float | None:
    started, finished = parse_utc(record.get("started_at")), parse_utc(record.get("finished_at"))
    return round(finished - started, 1) if started is not None and finished is not None else None


def _release_view(record: dict[str, Any]) -> dict[str, Any]:
    outcome = record.get("outcome")
    return {
        "id": record["id"],
        "environment": str(record.get("environment", "")),
        "release": str(record.get("release", "")),
        "image": str(record.get("image", "")),
        "image_digest": str(record.get("image_digest", "")),
        "previous_release": str(record.get("previous_release", "")),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "duration_s": _duration(record),
        "outcome": outcome if outcome in RELEASE_OUTCOMES else "unknown",
        "failed": outcome in FAILED_RELEASE_OUTCOMES,
        "reason": str(record.get("reason", "")),
    }


def summarize_releases(
    file: RecordFile, environments: list[str], history_limit: int = 20
) -> dict[str, Any]:
    """Last attempt and live release per environment, and the recent history (newest first)."""
    releases = sorted(
        (_release_view(r) for r in file.records), key=lambda r: _started(r), reverse=True
    )
    by_environment = {}
    for name in sorted(
        set(environments) | {r["environment"] for r in releases if r["environment"]}
    ):
        mine = [r for r in releases if r["environment"] == name]
        succeeded = [r for r in mine if r["outcome"] == "succeeded"]
        by_environment[name] = {
            "last_attempt": mine[0] if mine else None,
            "live": succeeded[0] if succeeded else None,
        }
    return {
        "by_environment": by_environment,
        "history": releases[:history_limit],
        "total": len(releases),
        "malformed_lines": file.malformed_lines,
        "error": file.error,
    }


def _job_view(record: dict[str, Any]) -> dict[str, Any]:
    view = {key: value for key, value in record.items() if key != "id"}
    view["id"] = record["id"]
    view["outcome"] = (
        record.get("outcome")
        if record.get("outcome") in ("succeeded", "failed", "in_progress")
        else "unknown"
    )
    view["duration_s"] = _duration(record)
    return view


def summarize_jobs(
    file: RecordFile, history_limit: int = 10, needs_verification: bool = False
) -> dict[str, Any]:
    """Backups or restore tests: the last run, the last good run, the recent history.

    A backup is only good when it also passed verification (``verified: true``).
    """
    runs = sorted((_job_view(r) for r in file.records), key=_started, reverse=True)

    def good(run: dict[str, Any]) -> bool:
        return run["outcome"] == "succeeded" and (
            not needs_verification or run.get("verified") is True
        )

    last_good = next((run for run in runs if good(run)), None)
    return {
        "last": runs[0] if runs else None,
        "last_good": last_good,
        "history": runs[:history_limit],
        "total": len(runs),
        "malformed_lines": file.malformed_lines,
        "error": file.error,
    }

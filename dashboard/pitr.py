"""Point-in-time recovery on the page (issue #30): the WAL archive, the restore window, the
base backups, the off-host copy and the monthly PITR drill, and what of it needs attention.

Two files beside backups.jsonl, both written by `{root}/bin/pitr.sh` (docs/dashboard.md):

- `pitr.json`, rewritten atomically by `pitr.sh tick` every minute; absent while PITR is
  off or before its first tick (then there is no section and no alert);
- `pitr-drills.jsonl`, a line appended by each monthly PITR drill; read like backups.jsonl
  (records.py: a torn line is skipped and counted).

A pitr.json that cannot be read or parsed is reported, never fatal; it is a critical alert,
because the archive's state is then unknown. A field of the wrong type reads as absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import records
from .timestamps import format_utc, parse_utc
from .timestamps import when as _when

FORMAT = 1
MAX_BYTES = 1 << 20  # a minute's snapshot is a few KB; a runaway file is refused, not parsed
GAPS_SHOWN = 20  # the newest ones: the newest is what breaks the chain
DRILLS_SHOWN = 6
CRITICAL, WARNING = "critical", "warning"
ARCHIVE_BEHIND_S = 5 * 60
TICK_STALE_S = 5 * 60
OFF_HOST_BEHIND_S = 5 * 60
BASE_MAX_AGE_S = 26 * 3600  # daily base backups, with two hours of slack
DRILL_MAX_AGE_S = 35 * 86400  # monthly drills, with slack


# ---- reading ----------------------------------------------------------------------------
def summarize(state_file: Path, drills_file: Path, stack: str | None) -> dict[str, Any] | None:
    """The status's ``pitr`` section; None when PITR has left no trace on this host."""
    state, error = read_state(state_file)
    drills = records.summarize_jobs(records.read_records(drills_file), DRILLS_SHOWN)
    if state is None and error is None and drills["total"] == 0 and drills["error"] is None:
        return None
    for run in (drills["last"], drills["last_good"], *drills["history"]):
        if run is not None:
            _drill_view(run)
    return {"stack": stack, "state": state, "error": error, "drills": drills}


def read_state(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the normalized pitr.json, None), (None, why it is unreadable) or (None, None)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None, None  # PITR off, or its first tick has not run: a state, not an error
    except OSError as error:
        return None, f"cannot read {path}: {error.strerror}"
    if len(data) > MAX_BYTES:
        return None, f"{path} is over {MAX_BYTES // 1024} KB: not a pitr.sh snapshot"
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        return None, f"{path} is not valid JSON ({error}): a torn or foreign write"
    if not isinstance(raw, dict):
        return None, f"{path} is not a JSON object"
    if raw.get("format") != FORMAT:
        return None, (f"{path} has format {raw.get('format')!r}; this dashboard reads format "
                      f"{FORMAT}: update the program (pulumi up) on both sides")
    return normalize(raw), None


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """Every field the page and the rules read, of its type or None."""
    archive, off_host = _object(raw, "archive"), _object(raw, "off_host")
    base, window = _object(raw, "base"), _object(raw, "window")
    gaps = [_gap(g) for g in raw.get("gaps") or [] if isinstance(g, dict)] \
        if isinstance(raw.get("gaps"), list) else []
    gaps.sort(key=lambda g: parse_utc(g["at"]) or 0.0, reverse=True)
    return {
        "updated_at": _time(raw.get("updated_at")),
        "enabled": raw.get("enabled") is True,
        "window_days": _number(raw.get("window_days")),
        "rpo_seconds": _number(raw.get("rpo_seconds")),
        "archive": {
            "last_archived_at": _time(archive.get("last_archived_at")),
            "last_archived_wal": _text(archive.get("last_archived_wal")),
            "last_failed_at": _time(archive.get("last_failed_at")),
            "last_failed_wal": _text(archive.get("last_failed_wal")),
            "waiting_segments": _count(archive.get("waiting_segments")),
            "oldest_waiting_since": _time(archive.get("oldest_waiting_since")),
        },
        "off_host": {
            "configured": off_host.get("configured") is True,
            "last_shipped_at": _time(off_host.get("last_shipped_at")),
            "pending": _count(off_host.get("pending")),
        },
        "base": {
            "last_id": _text(base.get("last_id")),
            "last_at": _time(base.get("last_at")),
            "count": _count(base.get("count")),
            "bytes": _count(base.get("bytes")),
        },
        "window": {"from": _time(window.get("from")), "to": _time(window.get("to"))},
        "archive_bytes": _count(raw.get("archive_bytes")),
        "gaps": gaps[:GAPS_SHOWN],
        "gap_count": len(gaps),
    }


def _drill_view(run: dict[str, Any]) -> None:
    for key in ("target_time", "marker_at"):
        run[key] = _time(run.get(key))
    for key in ("rpo_seconds", "restore_seconds"):
        run[key] = _number(run.get(key))
    run["reason"] = _text(run.get("reason"))


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _gap(raw: dict[str, Any]) -> dict[str, Any]:
    return {"at": _time(raw.get("at")), "wal": _text(raw.get("wal")),
            "reason": _text(raw.get("reason"))}


def _time(value: Any) -> str | None:
    moment = parse_utc(value)
    return None if moment is None else format_utc(moment)


def _text(value: Any) -> str:
    return value[:500] if isinstance(value, str) else ""


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) and value >= 0 else None


# ---- what needs attention ---------------------------------------------------------------
def alerts(pitr: dict[str, Any] | None, now: float) -> list[dict[str, str]]:
    """The PITR rules (docs/dashboard.md); none while PITR is off or has not ticked yet."""
    if not pitr:
        return []
    commands = _Commands(pitr.get("stack"))
    if pitr.get("error"):
        return [_alert(CRITICAL, "pitr.json",
                       f"{pitr['error']}. The WAL archive's state is unknown: "
                       f"{commands.status} says it from the host.")]
    state = pitr.get("state")
    if not state or not state.get("enabled"):
        return []
    updated = parse_utc(state.get("updated_at"))
    if updated is None or now - updated > TICK_STALE_S:
        # What the file says is as old as the file: only the tick's own silence is news.
        found = [_alert(CRITICAL, "PITR tick",
                        f"pitr.json was last rewritten {_when(state.get('updated_at'), now)}: the "
                        "per-minute `pitr.sh tick` has stopped running, so what the page shows "
                        f"of the archive is that old. {commands.status}")]
    else:
        found = _archive(state, now, commands) + _off_host(state, now, commands) \
            + _base_age(state, now, commands)
    return found + _chain(state, now, commands) + _drills(pitr, state, now, commands)


class _Commands:
    """The make targets an alert names, for the stack that owns the platform."""

    def __init__(self, stack: str | None) -> None:
        suffix = f"STACK={stack or '<stack>'}"
        self.status = f"make pitr-status {suffix}"
        self.base = f"make pitr-base {suffix}"
        self.drill = f"make pitr-drill {suffix}"


def _archive(state: dict[str, Any], now: float, commands: _Commands) -> list[dict[str, str]]:
    """Behind: a completed segment has waited over 5 min, or the archiver fails and its last
    success is over 5 min old. Until archived, those writes exist only on this disk."""
    archive = state["archive"]
    oldest = parse_utc(archive["oldest_waiting_since"])
    archived, failed = parse_utc(archive["last_archived_at"]), parse_utc(archive["last_failed_at"])
    waiting = oldest is not None and now - oldest > ARCHIVE_BEHIND_S
    failing = failed is not None and (archived is None or (
        failed > archived and now - archived > ARCHIVE_BEHIND_S))
    if not waiting and not failing:
        return []
    facts = ["WAL archiving is behind"]
    if oldest is not None:
        facts.append(f"{archive['waiting_segments'] or 'some'} segment(s) wait, the oldest "
                     f"since {_when(archive['oldest_waiting_since'], now)}")
    if failed is not None:
        facts.append(f"the last attempt failed {_when(archive['last_failed_at'], now)} "
                     f"({archive['last_failed_wal'] or 'segment not named'})")
    facts.append("last archived " + (
        f"{_when(archive['last_archived_at'], now)} ({archive['last_archived_wal']})"
        if archived is not None else "never"))
    return [_alert(CRITICAL, "WAL archive",
                   "; ".join(facts) + ". Writes since then are on this host's disk only; a "
                   f"restore cannot reach them. {commands.status} shows why.")]


def _off_host(state: dict[str, Any], now: float, commands: _Commands) -> list[dict[str, str]]:
    off_host = state["off_host"]
    shipped = parse_utc(off_host["last_shipped_at"])
    if not off_host["configured"] or not off_host["pending"]:
        return []
    if shipped is not None and now - shipped <= OFF_HOST_BEHIND_S:
        return []
    last = _when(off_host["last_shipped_at"], now) if shipped is not None else "never"
    return [_alert(WARNING, "off-host copy",
                   f"{off_host['pending']} archive file(s) wait to be copied off the host; the "
                   f"last copy went {last}. A lost VPS would lose what they hold. "
                   f"{commands.status}")]


def _base_age(state: dict[str, Any], now: float, commands: _Commands) -> list[dict[str, str]]:
    base_at = parse_utc(state["base"]["last_at"])
    if base_at is not None and now - base_at <= BASE_MAX_AGE_S:
        return []
    last = _when(state["base"]["last_at"], now) if base_at is not None else "none yet"
    return [_alert(WARNING, "base backup",
                   f"Last PITR base backup: {last}; they are daily. A restore replays all WAL "
                   f"since the last one. Take one: {commands.base}")]


def _chain(state: dict[str, Any], now: float, commands: _Commands) -> list[dict[str, str]]:
    """A gap newer than the last base backup: no restore reaches past it until the next.
    (With no base backup at all nothing is restorable yet; the base backup rule says so.)"""
    base_at = parse_utc(state["base"]["last_at"])
    if base_at is None:
        return []
    broken = [g for g in state["gaps"] if (parse_utc(g["at"]) or 0.0) > base_at]
    if not broken:
        return []
    gap = broken[0]  # the newest first
    return [_alert(WARNING, "WAL chain",
                   f"The WAL chain is broken since {_when(gap['at'], now)} (segment "
                   f"{gap['wal'] or 'not named'}: {gap['reason'] or 'no reason given'}): no "
                   "restore can reach past it until the next base backup. Take one now: "
                   f"{commands.base}")]


def _drills(pitr: dict[str, Any], state: dict[str, Any], now: float,
            commands: _Commands) -> list[dict[str, str]]:
    drills = pitr.get("drills") or {}
    last, good = drills.get("last"), drills.get("last_good")
    good_time = (good or {}).get("finished_at") or (good or {}).get("started_at")
    good_at = parse_utc(good_time)
    since = f"the last good one {_when(good_time, now)}" if good_at else "none succeeded"
    if last is not None and last.get("outcome") == "failed":
        return [_alert(CRITICAL, "PITR drill",
                       f"The last PITR drill failed ({_when(last.get('started_at'), now)}): "
                       f"{last.get('reason') or 'no reason recorded'}; {since}. Until one "
                       f"passes, a restore to a point in time is unproven. {commands.drill}")]
    base = state["base"]
    if not (base["count"] or base["last_at"]):
        return []
    if good_at is None or now - good_at > DRILL_MAX_AGE_S:
        return [_alert(WARNING, "PITR drill",
                       f"No PITR drill has succeeded in 35 days ({since}); they are monthly. "
                       f"Run one: {commands.drill}")]
    return []


def _alert(severity: str, subject: str, message: str) -> dict[str, str]:
    return {"severity": severity, "area": "pitr", "subject": subject, "message": message}

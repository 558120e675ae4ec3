"""The host's trail shipped off the host (review H3) on the page's alerts.

`{root}/bin/ship-logs.sh tick` (templates/logs/ship-logs.sh.j2), run by cron every minute,
sends the journal's and the audit trail's new entries to the off-host target and rewrites
`state/log-shipping.json` (beside backups.jsonl) atomically each time. Absent before its
first tick: then there is nothing to say. Unreadable: a warning, never fatal.

What each rule means for the operator: while chunks wait, or the tick has stopped, what
happens on the host is recorded only on the host, where root can erase it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .timestamps import parse_utc
from .timestamps import when as _when

FORMAT = 1
MAX_BYTES = 64 * 1024  # a tick's snapshot is well under 1 KB
CRITICAL, WARNING = "critical", "warning"
TICK_STALE_S = 5 * 60
BEHIND_S = 5 * 60


def summarize(path: Path, root_dir: Path) -> dict[str, Any] | None:
    """The status's ``log_shipping`` section; None before the first tick."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        return _section(root_dir, error=f"cannot read {path}: {error.strerror}")
    if len(data) > MAX_BYTES:
        return _section(root_dir, error=f"{path} is over {MAX_BYTES // 1024} KB: "
                                        "not a ship-logs.sh snapshot")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        return _section(root_dir, error=f"{path} is not valid JSON ({error})")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return _section(root_dir, error=f"{path} is not a format-{FORMAT} ship-logs.sh "
                                        "snapshot: update the program (pulumi up)")
    return _section(root_dir, state=normalize(raw))


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """Every field the rules read, of its type or None."""
    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) and value else None

    return {
        "updated_at": text("updated_at") if parse_utc(text("updated_at")) else None,
        "shipping": raw.get("configured") is True and raw.get("host_logs") is True,
        "last_shipped_at": text("last_shipped_at") if parse_utc(text("last_shipped_at"))
        else None,
        "pending": count("pending"), "pending_bytes": count("pending_bytes"),
        "held": text("held"), "refused": count("refused"), "problem": text("problem"),
        "skipped": count("skipped"), "last_skipped": text("last_skipped"),
    }


def _section(root_dir: Path, *, state: dict | None = None, error: str | None = None) -> dict:
    return {"status_command": f"sudo {root_dir}/bin/ship-logs.sh status", "state": state,
            "error": error}


def alerts(section: dict[str, Any] | None, now: float) -> list[dict[str, str]]:
    """None before the first tick or where nothing is shipped (no off-host target, a
    developer's machine): the page says nothing of a trail it cannot ship."""
    if not section:
        return []
    show = section["status_command"]
    if section.get("error"):
        return [_alert(WARNING, "log-shipping.json",
                       f"{section['error']}. Whether the host's journal leaves the host is "
                       f"unknown: `{show}` says it.")]
    state = section["state"]
    if not state["shipping"]:
        return []
    updated = parse_utc(state["updated_at"])
    if updated is None or now - updated > TICK_STALE_S:
        return [_alert(CRITICAL, "log shipping",
                       f"ship-logs.sh last ticked {_when(state['updated_at'], now)}: its cron "
                       "entry (/etc/cron.d/aiia-ship-logs) has stopped, so the journal and the "
                       "audit trail stay on this host, where root can erase them. "
                       f"`{show}`; `pulumi up` puts the entry back.")]
    return _behind(state, now, show) + _refused(state, show)


def _behind(state: dict[str, Any], now: float, show: str) -> list[dict[str, str]]:
    shipped = parse_utc(state["last_shipped_at"])
    waiting = state["pending"] > 0 and (shipped is None or now - shipped > BEHIND_S)
    if not waiting and not state["held"]:
        return []
    facts = [f"{state['pending']} chunk(s) of the journal and audit trail wait on this host "
             f"({state['pending_bytes']} bytes); the last left "
             f"{_when(state['last_shipped_at'], now) if shipped else 'never'}"]
    if state["problem"]:
        facts.append(f"the last attempt: {state['problem']}")
    if state["held"]:
        facts.append(f"new entries are no longer exported ({state['held']}): they wait in "
                     "the journal itself")
    return [_alert(WARNING, "log shipping backlog",
                   "; ".join(facts) + ". Until they leave, root on this host can erase them. "
                   f"Is the off-host target reachable? `{show}`")]


def _refused(state: dict[str, Any], show: str) -> list[dict[str, str]]:
    found = []
    if state["refused"]:
        found.append(_alert(CRITICAL, "log shipping refused",
                            f"the off-host target refused {state['refused']} chunk(s) (kept "
                            "under state/log-shipping/refused): its receiver may be older than "
                            "this program's (install templates/backup/receive-backup.sh.j2 "
                            f"there again). `{show}`"))
    if state["skipped"]:
        found.append(_alert(WARNING, "log shipping skipped",
                            f"{state['skipped']} part(s) of the trail were passed over, the "
                            f"last: {state['last_skipped'] or 'not named'} (a chunk over the "
                            "receiver's bound, or an audit file rotated away unread); they are "
                            "still in the journal and the daily backup's copy. "
                            "state/log-shipping/skipped lists them."))
    return found


def _alert(severity: str, subject: str, message: str) -> dict[str, str]:
    return {"severity": severity, "area": "host", "subject": subject, "message": message}

"""The nightly file-integrity check's last result on the host tile (review H3).

AIDE runs as root at night (components/host/integrity.py, aiia-integrity@check) and leaves a
world-readable summary: when, how many files were added, removed and changed since the
previous check, the first paths of each. The server reads it like /run/reboot-required,
with no privilege. Absent (a developer's machine, a host provisioned before the check
existed): nothing is shown and nothing alerts.

What alerts: a check that found changes, for a day (they are the night's report: the
program's deploys and the security updates show there too, so a warning, not critical:
`journalctl -u aiia-integrity@check` says what changed, and whether it was you); a check
that failed, or none for more than STALE_HOURS (AIDE killed, the timer gone).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .timestamps import parse_utc

# components/host/integrity.py SUMMARY_PATH (the dashboard imports nothing of the program).
SUMMARY = Path("/var/lib/aiia-integrity/summary.json")
STALE_HOURS = 26  # a nightly run, and a margin for a slow one
WARNING = "warning"
CRITICAL = "critical"
JOURNAL = "journalctl -u aiia-integrity@check"


def last_check(summary: Path = SUMMARY) -> dict[str, Any] | None:
    """The summary as the check wrote it, or None when there is none."""
    try:
        document = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def alerts(check: dict[str, Any] | None, now: float) -> list[dict[str, str]]:
    if not check:
        return []
    at = parse_utc(check.get("at"))
    if check.get("outcome") == "failed":
        return [_alert(WARNING, f"The file-integrity check failed at {check.get('at')} (AIDE "
                       f"exit status {check.get('aide_exit')}); see {JOURNAL}.")]
    if at is None or now - at > STALE_HOURS * 3600:
        return [_alert(WARNING, f"No file-integrity check since {check.get('at')}: is "
                       "aiia-integrity.timer running? (systemctl list-timers)")]
    if check.get("outcome") == "changed":
        counts = ", ".join(f"{check.get(kind, 0)} {kind}"
                           for kind in ("added", "removed", "changed"))
        return [_alert(WARNING, f"Files changed since the previous night's check ({counts}), "
                       f"e.g. {', '.join(_paths(check)) or '…'}: a deploy or an update, or "
                       f"not? {JOURNAL}")]
    return []


def _paths(check: dict[str, Any], shown: int = 3) -> list[str]:
    paths = [path for kind in ("added", "removed", "changed")
             for path in check.get(f"{kind}_paths") or []]
    return paths[:shown]


def _alert(severity: str, message: str) -> dict[str, str]:
    return {"severity": severity, "area": "host", "subject": "integrity", "message": message}

"""UTC timestamps as every shared file writes them (ISO 8601 with a ``Z`` suffix), and as
the messages an operator reads say them."""

from __future__ import annotations

from datetime import UTC, datetime


def format_utc(epoch_seconds: float) -> str:
    """``1764169445`` → ``"2025-11-26T15:04:05Z"`` (whole seconds)."""
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: object) -> float | None:
    """Parse ``...Z`` or ``...+00:00`` (nginx's ``$time_iso8601``) into epoch seconds.

    Returns None for anything that is not a time with a zone, so a bad record is skipped
    rather than guessed at (a naive time would silently take the host's zone).
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(
            text.replace("Z", "+00:00", 1) if text.endswith("Z") else text
        )
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def ago(seconds: float) -> str:
    """ "42 s ago", "5 min ago", "3 h ago", "4 days ago": the unit an operator reads fastest."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def when(text: str | None, now: float) -> str:
    """ "16:16 UTC, 5 min ago" for today, "2026-11-20 16:16 UTC" before: readable at a glance."""
    moment = parse_utc(text)
    if moment is None:
        return "unknown time"
    stamp = datetime.fromtimestamp(moment, tz=UTC)
    if now - moment < 86400:
        return f"{stamp:%H:%M} UTC, {ago(now - moment)}"
    return f"{stamp:%Y-%m-%d %H:%M} UTC"

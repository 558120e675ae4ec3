"""UTC timestamps as every shared file writes them: ISO 8601 with a ``Z`` suffix."""

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

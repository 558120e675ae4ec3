"""Where the dashboard's alerts are sent: the `notify` block of the dashboard's config.

The config file is readable by the unprivileged server, so it holds no secret: every URL,
token and password lives in a separate JSON file (``notify.secrets_file``, mode 0600, root)
that only the collector reads. A channel is named in both; the names join them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEVERITIES = ("warning", "critical")
KINDS = ("slack", "webhook", "email", "ntfy")
EMAIL_SECURITY = ("starttls", "tls")
# Which secret keys each kind needs (from the secrets file) and which it may have.
SECRET_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "slack": (("url",), ()),
    "webhook": (("url",), ("token",)),
    "email": (("password",), ()),
    "ntfy": (("url",), ("token",)),
}


class NotifyConfigError(ValueError):
    """A notify value that cannot work; the message names the key and the fix."""


@dataclass(frozen=True)
class Email:
    host: str
    port: int
    security: str  # starttls | tls
    username: str
    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str
    min_severity: str = "warning"
    email: Email | None = None
    secrets: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def wants(self, severity: str) -> bool:
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)


@dataclass(frozen=True)
class Heartbeat:
    every_seconds: int
    url: str = field(repr=False)


@dataclass(frozen=True)
class NotifyConfig:
    dashboard_url: str
    channels: tuple[Channel, ...]
    state_file: Path  # the notifier's own (0600): what it sent, what waits
    summary_file: Path  # what the page shows (0644, no secret)
    hold_collections: int = 2  # an alert must be seen (or gone) this many runs in a row
    repeat_critical_seconds: int = 4 * 3600
    heartbeat: Heartbeat | None = None
    timeout_seconds: float = 10.0
    # Where the page's "send a test message" button leaves its request for the next run
    # (a VPS's {root}/state/notify-requests, group-writable by the server); None: no button.
    requests_dir: Path | None = None


def parse_notify(raw: Any, secrets: dict[str, Any] | None, source: str) -> NotifyConfig | None:
    """The `notify` block with its secrets joined in; None when nothing is configured.

    ``secrets`` None: the server's view (it cannot read them), only the shape is checked."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise NotifyConfigError(f"{source}: notify must be an object")
    checked = secrets is not None
    secrets = secrets or {}
    channel_secrets = secrets.get("channels") or {}
    channels = tuple(
        _channel(item, channel_secrets, f"{source}: notify.channels[{i}]", checked)
        for i, item in enumerate(_list(raw.get("channels", []), f"{source}: notify.channels"))
    )
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise NotifyConfigError(f"{source}: notify.channels has duplicate names {names}")
    heartbeat = None
    if raw.get("heartbeat") is not None:
        url = (secrets.get("heartbeat") or {}).get("url", "")
        if checked:
            _url(url, f"{source}: the secrets file's heartbeat.url")
        every = _positive(raw["heartbeat"].get("every_minutes", 5),
                          f"{source}: notify.heartbeat.every_minutes")
        heartbeat = Heartbeat(every_seconds=every * 60, url=url)
    dashboard_url = raw.get("dashboard_url", "")
    if not isinstance(dashboard_url, str):
        raise NotifyConfigError(f"{source}: notify.dashboard_url must be a URL string")
    paths = {}
    for key in ("state_file", "summary_file"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.startswith("/"):
            raise NotifyConfigError(f"{source}: notify.{key} must be an absolute path")
        paths[key] = Path(value)
    requests = raw.get("requests_dir")
    if requests is not None and (not isinstance(requests, str) or not requests.startswith("/")):
        raise NotifyConfigError(f"{source}: notify.requests_dir must be an absolute path")
    return NotifyConfig(
        dashboard_url=dashboard_url,
        channels=channels,
        requests_dir=Path(requests) if requests else None,
        **paths,
        hold_collections=_positive(raw.get("hold_collections", 2),
                                   f"{source}: notify.hold_collections"),
        repeat_critical_seconds=60 * _positive(raw.get("repeat_critical_minutes", 240),
                                               f"{source}: notify.repeat_critical_minutes"),
        heartbeat=heartbeat,
    )


TEST_REQUEST = "test"  # the file the page's button leaves in requests_dir

# The copy the notifier's unit makes for its run (templates/dashboard/
# aiia-dashboard-notify.service.j2): the root-only file, readable by the run's own user.
SECRETS_ENV = "AIIA_NOTIFY_SECRETS"


def secrets_path(raw: dict[str, Any], environ: dict[str, str]) -> Path | None:
    """The unit's copy, else the file the config names (root's: the local stack, a test)."""
    if environ.get(SECRETS_ENV):
        return Path(environ[SECRETS_ENV])
    return Path(raw["secrets_file"]) if raw.get("secrets_file") else None


def read_secrets(path: Path | None) -> dict[str, Any]:
    """The secrets file as a dict; its absence is an error only where a channel needs it."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise NotifyConfigError(f"cannot read the notify secrets file {path}: {error}") from error
    if not isinstance(document, dict):
        raise NotifyConfigError(f"{path}: the top level must be a JSON object")
    return document


def _channel(raw: dict[str, Any], secrets: dict[str, Any], key: str, checked: bool) -> Channel:
    name, kind = raw.get("name"), raw.get("kind")
    if not isinstance(name, str) or not name:
        raise NotifyConfigError(f"{key}.name must be a non-empty string")
    if kind not in KINDS:
        raise NotifyConfigError(f"{key}.kind must be one of {', '.join(KINDS)} (got {kind!r})")
    minimum = raw.get("min_severity", "warning")
    if minimum not in SEVERITIES:
        raise NotifyConfigError(f"{key}.min_severity must be warning or critical")
    own = secrets.get(name) or {}
    required, optional = SECRET_KEYS[kind]
    for secret in required if checked else ():
        if not isinstance(own.get(secret), str) or not own[secret]:
            raise NotifyConfigError(
                f"{key} ({name}): the secrets file has no {secret}; set it as a Pulumi secret"
                " and run `pulumi up`")
    if checked and "url" in own:
        _url(own["url"], f"{key} ({name}): its url")
    kept = {k: own[k] for k in (*required, *optional) if isinstance(own.get(k), str)}
    return Channel(name=name, kind=kind, min_severity=minimum,
                   email=_email(raw, key) if kind == "email" else None, secrets=kept)


def _email(raw: dict[str, Any], key: str) -> Email:
    security = raw.get("security", "starttls")
    if security not in EMAIL_SECURITY:
        raise NotifyConfigError(f"{key}.security must be starttls or tls (got {security!r})")
    recipients = raw.get("to")
    if (not isinstance(recipients, list) or not recipients
            or not all(isinstance(r, str) and "@" in r for r in recipients)):
        raise NotifyConfigError(f"{key}.to must be a list of e-mail addresses")
    texts = {k: raw.get(k) for k in ("smtp_host", "username", "from")}
    for name, value in texts.items():
        if not isinstance(value, str) or not value:
            raise NotifyConfigError(f"{key}.{name} must be a non-empty string")
    port = _positive(raw.get("smtp_port", 587 if security == "starttls" else 465),
                     f"{key}.smtp_port")
    return Email(host=texts["smtp_host"], port=port, security=security,
                 username=texts["username"], sender=texts["from"], recipients=tuple(recipients))


def _list(value: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise NotifyConfigError(f"{key} must be a list of objects")
    return value


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise NotifyConfigError(f"{key} must be a positive integer (got {value!r})")
    return value


def _url(value: Any, key: str) -> None:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        # Never echo the value: it is a secret.
        raise NotifyConfigError(f"{key} must be an http(s) URL")

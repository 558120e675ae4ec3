"""`aiia:platform.alerts`: where the dashboard's alerts are sent (dashboard/notify.py).

The block is what the dashboard's notifier reads (checked here by the notifier's own rules,
dashboard/notify_config.py, so preview refuses what the host would), and every URL, token
and password is a Pulumi secret of its own, `aiia:alerts_<channel>_<url|token|password>` and
`aiia:alerts_heartbeat_url`: a webhook URL is a credential (whoever has it posts to the
channel), so none is ever in the stack file.

    aiia:platform:
      alerts:
        channels:
          - {name: ops, kind: slack}                       # aiia:alerts_ops_url
          - {name: phone, kind: ntfy, min_severity: critical}  # _url, optional _token
          - {name: oncall, kind: email, smtp_host: smtp.example.com, username: alerts,
             from: alerts@example.com, to: [oncall@example.com]}  # _password
        heartbeat: {every_minutes: 5}                      # aiia:alerts_heartbeat_url
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.settings.checks import NAMESPACE, Problems
from dashboard.notify_config import SECRET_KEYS, NotifyConfigError, parse_notify

CHANNEL_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
# Placeholders so the notifier's own rules can check the shape before the host has secrets.
_SHAPE_PATHS = {"state_file": "/state.json", "summary_file": "/summary.json"}


@dataclass(frozen=True)
class AlertSettings:
    """The notifier's block (no secret) and its secrets by name (Pulumi outputs)."""

    block: dict[str, Any]
    secrets: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def channels(self) -> list[dict[str, Any]]:
        return list(self.block.get("channels", []))

    @property
    def has_heartbeat(self) -> bool:
        return self.block.get("heartbeat") is not None


def alert_secret_keys(block: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(required, optional) secret keys the block names: one per channel secret."""
    required, optional = [], []
    for channel in block.get("channels") or []:
        if not isinstance(channel, Mapping) or channel.get("kind") not in SECRET_KEYS:
            continue
        needs, may = SECRET_KEYS[channel["kind"]]
        required += [f"alerts_{channel.get('name')}_{key}" for key in needs]
        optional += [f"alerts_{channel.get('name')}_{key}" for key in may]
    if block.get("heartbeat") is not None:
        required.append("alerts_heartbeat_url")
    return required, optional


def parse_alerts(platform_raw: Mapping[str, Any], secrets: Callable[[str], Any],
                 problems: Problems) -> AlertSettings | None:
    raw = platform_raw.get("alerts")
    if raw is None:
        return None
    key = f"{NAMESPACE}:platform.alerts"
    if not isinstance(raw, Mapping):
        problems.add(f"{key} must be an object with channels (and optionally a heartbeat)")
        return None
    block = dict(raw)
    try:
        parse_notify({**block, **_SHAPE_PATHS}, None, key)
    except NotifyConfigError as error:
        problems.add(f"{str(error).replace(f'{key}: notify.', f'{key}.')}; see docs/alerts.md")
        return None
    for channel in block.get("channels") or []:
        if not CHANNEL_NAME_RE.match(str(channel.get("name"))):
            problems.add(f"{key}.channels: name {channel.get('name')!r} must be lower-case "
                         "letters and digits, starting with a letter, at most 16 (it names "
                         "the channel's secrets, aiia:alerts_<name>_url)")
    required, optional = alert_secret_keys(block)
    values = {}
    for secret in required:
        value = secrets(secret)
        if value is None:
            problems.missing_secret(secret, "<value>", " (the channel's credential)")
        values[secret] = value
    values |= {secret: secrets(secret) for secret in optional if secrets(secret) is not None}
    return AlertSettings(block=block, secrets=values)


def secrets_document(alerts: AlertSettings, values: Mapping[str, str]) -> dict[str, Any]:
    """The notifier's secrets file: channel name → {url, token, password}; the heartbeat."""
    document: dict[str, Any] = {"channels": {}}
    for channel in alerts.channels:
        own = {}
        for secret_key in (*SECRET_KEYS[channel["kind"]][0], *SECRET_KEYS[channel["kind"]][1]):
            value = values.get(f"alerts_{channel['name']}_{secret_key}")
            if value is not None:
                own[secret_key] = value
        document["channels"][channel["name"]] = own
    if alerts.has_heartbeat:
        document["heartbeat"] = {"url": values.get("alerts_heartbeat_url")}
    return document

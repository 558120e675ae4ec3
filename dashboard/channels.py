"""How one batch of alert events reaches a person: Slack, a JSON webhook, e-mail, ntfy.

A batch is what one collection produced for one channel (a digest: many alerts starting
at once make one message). Every send has a timeout; an error names the channel and what
went wrong but never the URL or a token (they are secrets, and errors reach the page).
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.header import Header
from email.message import EmailMessage
from typing import Any

from .notify_config import Channel

USER_AGENT = "aiia-dashboard-notify/1"
LABELS = {"firing": "started", "repeat": "still", "resolved": "resolved",
          "escalated": "now critical", "test": "test"}
NTFY_PRIORITY = {"critical": "5", "warning": "4"}


_TLS: list[ssl.SSLContext] = []


def tls() -> ssl.SSLContext:
    """One TLS context for every send of a run: each parses the whole CA bundle (~1 MB),
    and the channels go side by side in a 32 MB unit."""
    if not _TLS:
        _TLS.append(ssl.create_default_context())
    return _TLS[0]


class SendError(RuntimeError):
    """A send that did not get through (retried later by the outbox)."""


def title(events: list[dict[str, Any]], host: str) -> str:
    if len(events) == 1:
        event = events[0]
        severity = "resolved" if event["kind"] == "resolved" else event["severity"]
        return f"[{severity.upper()}] {host}: {event['area']} {event['subject']}"
    firing = sum(1 for e in events if e["kind"] != "resolved")
    worst = "CRITICAL" if any(
        e["severity"] == "critical" and e["kind"] != "resolved" for e in events) else "WARNING"
    parts = [f"{firing} open" if firing else "", f"{len(events) - firing} resolved"
             if len(events) > firing else ""]
    prefix = worst if firing else "RESOLVED"
    return f"[{prefix}] {host}: {', '.join(p for p in parts if p)}"


def body(events: list[dict[str, Any]], dashboard_url: str) -> str:
    lines = []
    for event in events:
        label = LABELS.get(event["kind"], event["kind"])
        lines.append(f"{event['severity'].upper()} {label} — {event['area']} {event['subject']}:"
                     f" {event['message']} (since {event['since']})")
    if dashboard_url:
        lines.append(f"Dashboard: {dashboard_url}")
    return "\n".join(lines)


def send(channel: Channel, events: list[dict[str, Any]], host: str, dashboard_url: str,
         timeout: float) -> None:
    subject, text = title(events, host), body(events, dashboard_url)
    if channel.kind == "slack":
        _post(channel, json.dumps({"text": f"*{subject}*\n{text}"}).encode(),
              {"Content-Type": "application/json"}, timeout)
    elif channel.kind == "webhook":
        document = {"host": host, "title": subject, "dashboard": dashboard_url, "events": events}
        _post(channel, json.dumps(document).encode(),
              {"Content-Type": "application/json", **_bearer(channel)}, timeout)
    elif channel.kind == "ntfy":
        _post(channel, text.encode(), _ntfy_headers(channel, events, subject, dashboard_url),
              timeout)
    else:
        _mail(channel, subject, text, timeout)


def _ntfy_headers(channel: Channel, events: list[dict[str, Any]], subject: str,
                  dashboard_url: str) -> dict[str, str]:
    """ntfy's Title, Priority (5 urgent for a critical alert) and Tags headers."""
    open_events = [e for e in events if e["kind"] != "resolved"]
    critical = any(e["severity"] == "critical" for e in open_events)
    priority = NTFY_PRIORITY["critical" if critical else "warning"] if open_events else "3"
    tag = "rotating_light" if critical else "warning" if open_events else "white_check_mark"
    if not subject.isascii():  # HTTP headers are Latin-1; ntfy decodes RFC 2047
        subject = Header(subject, "utf-8").encode()
    headers = {"Title": subject, "Priority": priority, "Tags": tag, **_bearer(channel)}
    if dashboard_url:
        headers["Click"] = dashboard_url
    return headers


def _bearer(channel: Channel) -> dict[str, str]:
    token = channel.secrets.get("token")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _post(channel: Channel, data: bytes, headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in notify_config
        channel.secrets["url"], data=data, method="POST",
        headers={"User-Agent": USER_AGENT, **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls()) as response:  # noqa: S310
            response.read(4096)
    except urllib.error.HTTPError as error:
        raise SendError(f"{channel.name}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise SendError(f"{channel.name}: {type(error).__name__}: {reason}") from None


def _mail(channel: Channel, subject: str, text: str, timeout: float) -> None:
    email = channel.email
    message = EmailMessage()
    message["Subject"], message["From"] = subject, email.sender
    message["To"] = ", ".join(email.recipients)
    message.set_content(text)
    context = tls()
    try:
        if email.security == "tls":
            client = smtplib.SMTP_SSL(email.host, email.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(email.host, email.port, timeout=timeout)
        with client:
            if email.security == "starttls":
                client.starttls(context=context)  # refuses to go on in clear text
            client.login(email.username, channel.secrets["password"])
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        raise SendError(f"{channel.name}: SMTP {type(error).__name__}: {error}"[:300]) from None

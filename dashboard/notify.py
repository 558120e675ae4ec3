"""Alerts that reach a person: the dashboard's alert rules, sent when they start, repeated
while critical, and resolved — run once a minute after the collector, over its snapshot
(a one-shot like the collector: nothing resident).

What an operator paged at 3 a.m. wants, and what they do not:
- an alert is sent once it has held for ``hold_collections`` runs in a row, and resolved
  once it has been gone as long: a flap sends nothing;
- everything one run produced for a channel goes out as one message (a digest);
- a critical alert is repeated every ``repeat_critical_seconds`` while it lasts; a warning
  is not (it is on the page);
- a send that fails stays in that channel's outbox and is retried with back-off (1 min,
  doubling, at most 1 h) while the other channels go on; the failure is shown on the page;
- the state lives in a file of the notifier's own: a restart sends nothing again.

It runs apart from the collector (its own systemd unit on a VPS: no Docker socket and no
capability, but the internet and the channel secrets, which the collector has not).
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import alerts, channels
from .config import Config
from .files import read_json, write_json_atomic
from .host import live_host
from .notify_config import TEST_REQUEST, Channel, Heartbeat, NotifyConfig
from .timestamps import format_utc

STATE_KEY = "notify"
BACKOFF_FIRST_S, BACKOFF_MAX_S = 60, 3600
GIVE_UP_S = 24 * 3600  # events older than a day are dropped (and counted) rather than sent
OUTBOX_MAX_EVENTS = 100
HEARTBEAT_SLACK_S = 30  # the collector's minute tick jitters


def track(tracked: dict[str, dict[str, Any]], current: list[dict[str, str]], now: int,
          hold: int, repeat_s: int) -> list[dict[str, Any]]:
    """Update what is tracked with this run's alerts; return the events to send."""
    events, seen = [], set()
    for alert in current:
        key = f"{alert['area']}|{alert['subject']}"
        seen.add(key)
        entry = tracked.setdefault(key, {"count": 0, "first_seen": now, "sent_severity": None,
                                         "sent_at": None})
        entry.update(severity=alert["severity"], area=alert["area"], subject=alert["subject"],
                     message=alert["message"], absent=0)
        entry["count"] += 1
        kind = _due(entry, now, hold, repeat_s)
        if kind is not None:
            if kind != "repeat":
                entry["sent_severity"] = entry["severity"]
            entry["sent_at"] = now
            events.append(_event(kind, entry, entry["severity"]))
    for key in [k for k in tracked if k not in seen]:
        entry = tracked[key]
        entry["absent"] = entry.get("absent", 0) + 1
        if entry["sent_severity"] is None:
            del tracked[key]  # gone before it was ever sent: a flap, nothing to say
        elif entry["absent"] >= hold:
            events.append(_event("resolved", entry, entry["sent_severity"]))
            del tracked[key]
    return events


def _due(entry: dict[str, Any], now: int, hold: int, repeat_s: int) -> str | None:
    if entry["count"] < hold:
        return None
    if entry["sent_severity"] is None:
        return "firing"
    if entry["severity"] == alerts.CRITICAL and entry["sent_severity"] != alerts.CRITICAL:
        return "escalated"
    if entry["severity"] == alerts.CRITICAL and now - entry["sent_at"] >= repeat_s:
        return "repeat"
    return None


def _event(kind: str, entry: dict[str, Any], severity: str) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "area": entry["area"],
            "subject": entry["subject"], "message": entry["message"],
            "since": format_utc(entry["first_seen"])}


def queue(state: dict[str, Any], config: NotifyConfig, events: list[dict[str, Any]],
          now: int) -> None:
    """Put each event in the outbox of every channel that wants its severity."""
    outboxes = state.setdefault("outbox", {})
    for channel in config.channels:
        wanted = [e for e in events if channel.wants(e["severity"])]
        if not wanted:
            continue
        box = outboxes.setdefault(channel.name, {"events": [], "attempts": 0, "next_at": now,
                                                 "dropped": 0})
        box["events"].extend({**e, "queued_at": now} for e in wanted)
        overflow = len(box["events"]) - OUTBOX_MAX_EVENTS
        if overflow > 0:
            box["events"] = box["events"][overflow:]
            box["dropped"] += overflow


def deliver(state: dict[str, Any], config: NotifyConfig, now: int, host: str,
            sender=channels.send) -> None:
    """Send every channel's due outbox, channels side by side: one down holds up no other."""
    outboxes = state.setdefault("outbox", {})
    statuses = state.setdefault("channels", {})
    due = []
    for channel in config.channels:
        box = outboxes.get(channel.name)
        if box is None:
            continue
        stale = [e for e in box["events"] if now - e["queued_at"] > GIVE_UP_S]
        box["dropped"] += len(stale)
        box["events"] = [e for e in box["events"] if now - e["queued_at"] <= GIVE_UP_S]
        if box["events"] and box["next_at"] <= now:
            due.append((channel, box))
    if not due:
        return
    channels.tls()  # made once, before the threads share it
    with ThreadPoolExecutor(max_workers=len(due)) as pool:
        results = list(pool.map(lambda item: _attempt(item[0], item[1]["events"], config, host,
                                                      sender), due))
    for (channel, box), error in zip(due, results, strict=True):
        status = statuses.setdefault(channel.name, {})
        if error is None:
            box.update(events=[], attempts=0, next_at=now)
            status["last_ok_at"] = format_utc(now)
            status.pop("last_error", None)
            continue
        box["attempts"] += 1
        box["next_at"] = now + min(BACKOFF_FIRST_S * 2 ** (box["attempts"] - 1), BACKOFF_MAX_S)
        status.update(last_error=error, last_error_at=format_utc(now))


def _attempt(channel: Channel, events: list[dict[str, Any]], config: NotifyConfig, host: str,
             sender) -> str | None:
    clean = [{k: v for k, v in e.items() if k != "queued_at"} for e in events]
    try:
        sender(channel, clean, host, config.dashboard_url, config.timeout_seconds)
    except channels.SendError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - one channel's bug must not stop the others
        return f"{channel.name}: {type(error).__name__}: {error}"[:300]
    return None


def heartbeat(state: dict[str, Any], beat: Heartbeat, current: list[dict[str, str]], now: int,
              timeout: float) -> None:
    """Ping the dead-man's switch; `<url>/fail` with the critical alerts while any is open."""
    last = state.get("heartbeat", {})
    if now - last.get("sent_at", 0) < beat.every_seconds - HEARTBEAT_SLACK_S:
        return
    critical = [a for a in current if a["severity"] == alerts.CRITICAL]
    url = beat.url.rstrip("/") + "/fail" if critical else beat.url
    data = "\n".join(f"{a['area']} {a['subject']}: {a['message']}" for a in critical)[:2000]
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in notify_config
        url, data=data.encode() if critical else None,
        headers={"User-Agent": channels.USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout,  # noqa: S310
                                    context=channels.tls()) as response:
            response.read(1024)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "code", None) or getattr(error, "reason", error)
        state["heartbeat"] = {**last, "last_error": f"heartbeat: {reason}",
                              "last_error_at": format_utc(now)}
        return
    state["heartbeat"] = {"sent_at": now, "last_ok_at": format_utc(now),
                          "failing": bool(critical)}


def run(config: NotifyConfig, document: dict[str, Any], now: int,
        sender=channels.send) -> dict[str, Any]:
    """One run over the collector's snapshot; returns (and writes) what the page shows."""
    state = _read_state(config.state_file)
    current = [a for a in alerts.evaluate(document, now) if a["area"] != "notify"]
    events = track(state.setdefault("alerts", {}), current, now, config.hold_collections,
                   config.repeat_critical_seconds)
    queue(state, config, events, now)
    deliver(state, config, now, socket.gethostname(), sender)
    _answer_test_request(state, config, now, sender)
    if config.heartbeat is not None:
        heartbeat(state, config.heartbeat, current, now, config.timeout_seconds)
    write_json_atomic(config.state_file, state, mode=0o600)
    shown = summary(state, config)
    write_json_atomic(config.summary_file, shown, mode=0o640)  # the server's group
    return shown


def _read_state(path: Path) -> dict[str, Any]:
    """The last run's state; a missing or unreadable file starts afresh (sends what is
    open again once it holds), which is better than never sending again."""
    state = read_json(path)
    return state if isinstance(state, dict) else {}


def notify_once(config: Config, now: int | None = None) -> dict[str, Any] | None:
    """The `notify` command: the collector's snapshot, live host numbers, then `run`."""
    settings = config.notify_with_secrets()
    if settings is None:
        return None
    snapshot = read_json(config.status_path) or {}
    document = {**snapshot, "host": live_host(config.root_dir)}
    return run(settings, document, int(now if now is not None else time.time()))


def _answer_test_request(state: dict[str, Any], config: NotifyConfig, now: int,
                         sender) -> None:
    """The page's button left a request: one test message through every channel, once."""
    if config.requests_dir is None:
        return
    request = config.requests_dir / TEST_REQUEST
    try:
        request.unlink()
    except FileNotFoundError:
        return
    results = send_test(config, socket.gethostname(), now, sender)
    state["test"] = {"at": format_utc(now), "results": results}


def summary(state: dict[str, Any], config: NotifyConfig) -> dict[str, Any]:
    """Per channel: last success, last error, what waits; never a URL, token or password."""
    outboxes, statuses = state.get("outbox", {}), state.get("channels", {})
    views = []
    for channel in config.channels:
        box, status = outboxes.get(channel.name, {}), statuses.get(channel.name, {})
        views.append({
            "name": channel.name, "kind": channel.kind, "min_severity": channel.min_severity,
            "last_ok_at": status.get("last_ok_at"), "last_error": status.get("last_error"),
            "last_error_at": status.get("last_error_at"),
            "pending": len(box.get("events", [])), "dropped": box.get("dropped", 0),
            "next_attempt_at": format_utc(box["next_at"]) if box.get("events") else None,
        })
    beat = state.get("heartbeat") if config.heartbeat is not None else None
    return {"channels": views, "test": state.get("test"),
            "test_button": config.requests_dir is not None,
            "heartbeat": beat and {k: v for k, v in beat.items() if k != "sent_at"}}


def send_test(config: NotifyConfig, host: str, now: int,
              sender=channels.send) -> dict[str, str | None]:
    """A test message through every channel now (not queued); channel name → error or None."""
    event = {"kind": "test", "severity": alerts.WARNING, "area": "notify", "subject": "test",
             "message": "A test message from the dashboard: this channel works.",
             "since": format_utc(now)}
    with ThreadPoolExecutor(max_workers=max(1, len(config.channels))) as pool:
        results = pool.map(lambda c: _attempt(c, [event], config, host, sender),
                           config.channels)
        return {c.name: error for c, error in zip(config.channels, results, strict=True)}

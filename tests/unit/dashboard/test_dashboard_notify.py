"""The alert notifier's rules: hold, digest, repeat, resolve, back-off, restarts, isolation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dashboard import alerts, notify
from dashboard.config import ConfigError, parse_config
from dashboard.notify_config import NotifyConfigError, parse_notify
from tests.unit.dashboard.test_dashboard_config import render, template_variables

NOW = 1_800_000_000
DOWN = {"severity": "critical", "area": "environment", "subject": "prod",
        "message": "prod is down: 502 from nginx"}
DISK = {"severity": "warning", "area": "host", "subject": "disk", "message": "disk 87 % full"}
SECRETS = {"channels": {"ops": {"url": "https://hooks.example/ops"},
                        "pager": {"url": "https://ntfy.example/t", "token": "tk"}}}
RAW = {"dashboard_url": "https://status.example/", "hold_collections": 2,
       "state_file": "/state/notify.json", "summary_file": "/run/notify-summary.json",
       "repeat_critical_minutes": 240,
       "channels": [{"name": "ops", "kind": "slack"},
                    {"name": "pager", "kind": "ntfy", "min_severity": "critical"}]}


class Recorder:
    """A sender that records each message per channel, or fails for the named channels."""

    def __init__(self) -> None:
        self.sent: dict[str, list[list[dict]]] = {}
        self.failing: set[str] = set()

    def __call__(self, channel, events, host, dashboard_url, timeout):
        if channel.name in self.failing:
            raise notify.channels.SendError(f"{channel.name}: HTTP 503 Service Unavailable")
        self.sent.setdefault(channel.name, []).append(events)


@pytest.fixture
def config(tmp_path):
    return with_files(parse_notify(RAW, SECRETS, "test"), tmp_path)


def with_files(settings, directory):
    """The settings with their state and summary files in a test's own directory."""
    return dataclasses.replace(settings, state_file=directory / "state" / "notify.json",
                               summary_file=directory / "summary.json")


def run(config, current, now, sender, monkeypatch):
    monkeypatch.setattr(alerts, "evaluate", lambda document, at: list(current))
    return notify.run(config, {}, now, sender)


def kinds(messages):
    return [[(e["kind"], e["subject"]) for e in message] for message in messages]


def test_an_alert_is_sent_once_it_holds_and_resolved_once_it_is_gone(config, monkeypatch):
    sender = Recorder()
    run(config, [DOWN], NOW, sender, monkeypatch)
    assert sender.sent == {}  # one collection is not enough
    run(config, [DOWN], NOW + 60, sender, monkeypatch)
    assert kinds(sender.sent["ops"]) == [[("firing", "prod")]]
    assert kinds(sender.sent["pager"]) == [[("firing", "prod")]]
    assert sender.sent["ops"][0][0]["since"] == "2027-01-15T08:00:00Z"
    run(config, [DOWN], NOW + 120, sender, monkeypatch)
    run(config, [], NOW + 180, sender, monkeypatch)
    assert len(sender.sent["ops"]) == 1  # gone once: maybe a flap, wait
    run(config, [], NOW + 240, sender, monkeypatch)
    assert kinds(sender.sent["ops"]) == [[("firing", "prod")], [("resolved", "prod")]]
    assert kinds(sender.sent["pager"])[-1] == [("resolved", "prod")]


def test_a_flap_sends_nothing(config, monkeypatch):
    sender = Recorder()
    for minute in range(10):
        run(config, [DOWN] if minute % 2 == 0 else [], NOW + 60 * minute, sender, monkeypatch)
    assert sender.sent == {}


def test_alerts_starting_together_go_out_as_one_digest(config, monkeypatch):
    sender = Recorder()
    for minute in range(2):
        run(config, [DOWN, DISK], NOW + 60 * minute, sender, monkeypatch)
    assert kinds(sender.sent["ops"]) == [[("firing", "prod"), ("firing", "disk")]]
    # The pager asked for critical only: the disk warning never reaches it.
    assert kinds(sender.sent["pager"]) == [[("firing", "prod")]]


def test_a_critical_alert_repeats_at_its_interval_and_a_warning_does_not(config, monkeypatch):
    sender = Recorder()
    for minute in range(0, 4 * 60 + 2):
        run(config, [DOWN, DISK], NOW + 60 * minute, sender, monkeypatch)
    assert kinds(sender.sent["ops"]) == [
        [("firing", "prod"), ("firing", "disk")], [("repeat", "prod")]]


def test_a_warning_that_turns_critical_is_sent_again(config, monkeypatch):
    sender = Recorder()
    warning = {**DOWN, "severity": "warning"}
    for minute, current in enumerate([[warning], [warning], [DOWN]]):
        run(config, current, NOW + 60 * minute, sender, monkeypatch)
    assert kinds(sender.sent["ops"]) == [[("firing", "prod")], [("escalated", "prod")]]
    assert kinds(sender.sent["pager"]) == [[("escalated", "prod")]]


def test_a_restart_of_the_sender_sends_nothing_again(config, monkeypatch):
    sender = Recorder()
    for minute in range(2):
        run(config, [DOWN], NOW + 60 * minute, sender, monkeypatch)
    assert oct(config.state_file.stat().st_mode & 0o777) == "0o600"
    restarted = Recorder()  # each run is a new process: only the state file carries over
    for minute in range(2, 10):
        run(config, [DOWN], NOW + 60 * minute, restarted, monkeypatch)
    assert restarted.sent == {}
    shown = json.loads(config.summary_file.read_text())  # what the server reads
    assert [c["last_ok_at"] for c in shown["channels"]] == ["2027-01-15T08:01:00Z"] * 2


def test_one_channel_down_holds_up_no_other_and_is_retried_with_back_off(config,
                                                                        monkeypatch):
    sender = Recorder()
    sender.failing.add("ops")
    shown = [run(config, [DOWN], NOW + 60 * minute, sender, monkeypatch)
             for minute in range(2)][-1]
    assert kinds(sender.sent["pager"]) == [[("firing", "prod")]]
    ops = next(c for c in shown["channels"] if c["name"] == "ops")
    assert ops["pending"] == 1 and "HTTP 503" in ops["last_error"]
    assert ops["next_attempt_at"] == "2027-01-15T08:02:00Z"  # 1 min after the failure
    failed_at = []
    for minute in range(2, 12):
        before = len(sender.sent.get("ops", []))
        shown = run(config, [DOWN], NOW + 60 * minute, sender, monkeypatch)
        if next(c for c in shown["channels"] if c["name"] == "ops")["last_error_at"] == \
                f"2027-01-15T08:{minute:02d}:00Z":
            failed_at.append(minute)
        assert len(sender.sent.get("ops", [])) == before
    assert failed_at == [2, 4, 8]  # 1, 2, 4 minutes apart
    sender.failing.clear()
    shown = run(config, [DOWN], NOW + 60 * 16, sender, monkeypatch)
    assert kinds(sender.sent["ops"]) == [[("firing", "prod")]]  # delivered late, once
    ops = next(c for c in shown["channels"] if c["name"] == "ops")
    assert ops["pending"] == 0 and ops["last_error"] is None


def test_a_failing_channel_is_on_the_page_and_the_page_shows_no_secret(config, monkeypatch):
    sender = Recorder()
    sender.failing.add("pager")
    for minute in range(2):
        shown = run(config, [DOWN], NOW + 60 * minute, sender, monkeypatch)
    monkeypatch.undo()
    found = [a for a in alerts.evaluate({"notifications": shown}, NOW) if a["area"] == "notify"]
    assert [(a["severity"], a["subject"]) for a in found] == [("warning", "pager")]
    assert "not getting through" in found[0]["message"]
    text = json.dumps(shown)
    assert "ntfy.example" not in text and "hooks.example" not in text and "tk" not in text


def test_events_waiting_over_a_day_are_dropped_and_counted(config, monkeypatch):
    sender = Recorder()
    sender.failing.add("ops")
    for minute in range(2):
        run(config, [DOWN], NOW + 60 * minute, sender, monkeypatch)
    shown = run(config, [DOWN], NOW + notify.GIVE_UP_S + 3600, sender, monkeypatch)
    ops = next(c for c in shown["channels"] if c["name"] == "ops")
    assert ops["dropped"] == 1


def test_the_server_reads_the_shape_without_the_secrets_and_the_collector_needs_them():
    parsed = parse_config({**base_config(), "notify": RAW})
    assert [c.name for c in parsed.notify.channels] == ["ops", "pager"]
    assert parsed.notify.channels[0].secrets == {}
    with pytest.raises(NotifyConfigError, match="ops.*no url.*Pulumi secret"):
        parse_notify(RAW, {"channels": {}}, "test")


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "pagerduty"}, "kind must be one of slack, webhook, email, ntfy"),
    ({"min_severity": "info"}, "min_severity must be warning or critical"),
    ({"kind": "email"}, "no password; set it as a Pulumi secret"),
    ({"kind": "email", "smtp_host": "mx", "username": "u", "from": "a@b"},
     "to must be a list of e-mail addresses"),
    ({"kind": "email", "to": ["x@y"], "security": "none"}, "security must be starttls or tls"),
])
def test_bad_channels_are_refused_naming_the_key(change, message):
    raw = {**RAW, "channels": [{**RAW["channels"][0], **change}]}
    secrets = {"channels": {"ops": {"password": "pw"}}} if "to" in str(change) or "from" in \
        str(change) else SECRETS
    with pytest.raises(NotifyConfigError, match=f"notify.channels\\[0\\].*({message})"):
        parse_notify(raw, secrets, "test")


def test_a_secret_url_is_never_echoed_in_an_error():
    secrets = {"channels": {"ops": {"url": "ftp://secret-token@x"}, "pager": SECRETS[
        "channels"]["pager"]}}
    with pytest.raises(NotifyConfigError) as error:
        parse_notify(RAW, secrets, "test")
    assert "secret-token" not in str(error.value)


def test_a_bad_notify_block_stops_the_dashboard_with_a_config_error():
    with pytest.raises(ConfigError, match="notify.channels must be a list"):
        parse_config({**base_config(), "notify": {"channels": "slack"}})


def base_config() -> dict:
    return json.loads(render(**template_variables()))

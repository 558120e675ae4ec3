"""components/settings/alerts.py: platform.alerts checked at preview by the notifier's own
rules, and every channel credential a Pulumi secret of its own."""

from __future__ import annotations

import copy

import pytest

from components.settings import ConfigError, parse_settings
from components.settings.alerts import secrets_document
from tests.harness.program import made_up_secrets, stack_config
from tests.harness.settings import parse, problems, raw_config, secrets_of

CHANNELS = [{"name": "ops", "kind": "slack"},
            {"name": "phone", "kind": "ntfy", "min_severity": "critical"},
            {"name": "oncall", "kind": "email", "smtp_host": "smtp.example.com",
             "username": "alerts", "from": "alerts@example.com", "to": ["oncall@example.com"]}]
SECRETS = {"alerts_ops_url": "https://hooks.slack.com/services/T/B/x",
           "alerts_phone_url": "https://ntfy.sh/aiia-x", "alerts_phone_token": "tk_1",
           "alerts_oncall_password": "smtp-pw", "alerts_heartbeat_url": "https://hc-ping.com/u"}


def with_alerts(**block):
    def change(raw):
        raw["platform"]["alerts"] = {"channels": CHANNELS, **block}
    return change


def with_secrets(values=SECRETS, leave_out=()):
    base = secrets_of("prod")
    return lambda key: None if key in leave_out else values.get(key, base(key))


def test_channels_and_their_secrets_make_the_notifiers_secrets_file():
    settings = parse("prod", with_alerts(heartbeat={"every_minutes": 5}), with_secrets())
    alerts = settings.platform.alerts
    assert [c["name"] for c in alerts.channels] == ["ops", "phone", "oncall"]
    document = secrets_document(alerts, alerts.secrets)
    assert document == {"channels": {
        "ops": {"url": "https://hooks.slack.com/services/T/B/x"},
        "phone": {"url": "https://ntfy.sh/aiia-x", "token": "tk_1"},
        "oncall": {"password": "smtp-pw"}}, "heartbeat": {"url": "https://hc-ping.com/u"}}


def test_no_alerts_block_no_notifier():
    assert parse("prod").platform.alerts is None


def test_a_missing_channel_secret_names_the_command_that_sets_it():
    message = problems("prod", with_alerts(), with_secrets(leave_out={"alerts_ops_url"}))
    assert ("aiia:alerts_ops_url is missing; set it with `pulumi config set -s prod --secret "
            "aiia:alerts_ops_url <value>` (the channel's credential)") in message


def test_a_channel_secret_in_plain_text_is_refused():
    raw = copy.deepcopy(raw_config("prod"))
    with_alerts()(raw)
    secret_keys = [key.split(":", 1)[1] for key in made_up_secrets(stack_config("prod"))]
    given = [*raw, *secret_keys, *SECRETS]
    plain = [key for key in SECRETS if key != "alerts_ops_url"]
    with pytest.raises(ConfigError) as error:
        parse_settings("prod", raw, with_secrets(), given_keys=given,
                       secret_keys=[*secret_keys, *plain])
    assert "aiia:alerts_ops_url is in the stack file in plain text" in str(error.value)
    assert "aiia:alerts_phone_url" not in str(error.value)


def test_bad_channels_are_refused_at_preview_naming_the_key():
    bad_kind = [{"name": "ops", "kind": "pagerduty"}]
    message = problems("prod", lambda raw: raw["platform"].__setitem__(
        "alerts", {"channels": bad_kind}), with_secrets())
    assert ("aiia:platform.alerts.channels[0].kind must be one of slack, webhook, email, ntfy"
            " (got 'pagerduty')") in message
    bad_name = [{"name": "Ops-Team", "kind": "slack"}]
    message = problems("prod", lambda raw: raw["platform"].__setitem__(
        "alerts", {"channels": bad_name}), with_secrets())
    assert "name 'Ops-Team' must be lower-case letters and digits" in message
    no_recipients = [{**CHANNELS[2], "to": []}]
    message = problems("prod", lambda raw: raw["platform"].__setitem__(
        "alerts", {"channels": no_recipients}), with_secrets())
    assert "aiia:platform.alerts.channels[0].to must be a list of e-mail addresses" in message


def test_a_channel_secret_on_a_stack_without_the_platform_points_to_the_platforms_stack():
    raw = raw_config("staging")
    secret_keys = [key.split(":", 1)[1] for key in made_up_secrets(stack_config("staging"))]
    with pytest.raises(ConfigError) as error:
        parse_settings("staging", raw, secrets_of("staging"),
                       given_keys=[*raw, *secret_keys, "alerts_ops_url"],
                       secret_keys=[*secret_keys, "alerts_ops_url"])
    assert "aiia:alerts_ops_url belongs to the stack that owns the platform" in str(error.value)

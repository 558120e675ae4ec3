"""components/settings/dashboard.py: who signs in to the status dashboard (one shared account,
or one per operator) and who reaches it (review L3)."""

import pytest

from components.settings import ConfigError, parse_settings
from tests.harness.settings import parse, problems, raw_config, secrets_of


def with_dashboard(**values):
    def change(raw):
        raw["platform"]["dashboard"] = {**raw["platform"].get("dashboard", {}), **values}
    return change


def operator_secrets(**passwords):
    """The prod stack's made-up secrets, with each operator's password (and no shared one)."""
    values = secrets_of("prod")

    def secret(key):
        if key == "dashboard_password":
            return None
        name = key.removeprefix("dashboard_password_")
        return passwords[name] if name != key and name in passwords else values(key)
    return secret


def parse_with_operators(secrets, given=None, **dashboard):
    raw = raw_config("prod")
    with_dashboard(**dashboard)(raw)
    keys = {}
    if given is not None:
        keys = {"given_keys": set(raw) | set(given), "secret_keys": set(given)}
    return parse_settings("prod", raw, secrets, secret_text=secrets, **keys)


def test_a_stack_without_operators_keeps_the_one_shared_account():
    platform = parse("prod").platform
    assert platform.dashboard.operators == ()
    assert platform.dashboard.user == "admin"
    assert platform.dashboard_password == "test-dashboard-password"
    assert platform.dashboard_passwords == {}


def test_each_operator_reads_a_secret_of_their_own_and_the_shared_one_is_not_read():
    asked = []
    secrets = operator_secrets(alice="a" * 16, bob="b" * 20)

    def recording(key):
        asked.append(key)
        return secrets(key)

    platform = parse_with_operators(recording, operators=["alice", "bob"]).platform
    assert platform.dashboard.operators == ("alice", "bob")
    assert platform.dashboard_passwords == {"alice": "a" * 16, "bob": "b" * 20}
    assert "dashboard_password" not in asked  # `make init` generates what is read: not it


def test_a_missing_operator_password_names_the_command_that_sets_it():
    secrets = operator_secrets(alice="a" * 16)
    with pytest.raises(ConfigError) as error:
        parse_with_operators(secrets, operators=["alice", "bob"])
    assert ("aiia:dashboard_password_bob is missing; set it with `pulumi config set -s prod "
            "--secret aiia:dashboard_password_bob") in str(error.value)
    assert "dashboard_password_alice" not in str(error.value)


def test_a_short_operator_password_is_refused_naming_the_operator_and_the_fix():
    secrets = operator_secrets(alice="a" * 16, bob="b" * 15)
    with pytest.raises(ConfigError) as error:
        parse_with_operators(secrets, operators=["alice", "bob"])
    message = str(error.value)
    assert "aiia:dashboard_password_bob has 15 characters" in message
    assert ("openssl rand -base64 24 | pulumi config set -s prod --secret "
            "aiia:dashboard_password_bob") in message
    assert "dashboard_password_alice" not in message


@pytest.mark.parametrize("name", ["Alice", "al-ice", "1bob", "", "a" * 33, "al ice", "éve",
                                  "al:ice"])
def test_an_operator_name_outside_the_strict_pattern_is_refused(name):
    message = problems("prod", with_dashboard(operators=[name]))
    assert f"aiia:platform.dashboard.operators: {name!r} must be lower-case letters" in message


def test_operators_must_be_a_list_of_distinct_names():
    assert "operators='alice' must be a list" in problems("prod", with_dashboard(operators="alice"))
    message = problems("prod", with_dashboard(operators=["alice", "bob", "alice"]))
    assert "operators names alice more than once" in message


def test_the_shared_account_s_name_beside_operators_is_refused():
    message = problems("prod", with_dashboard(operators=["alice"], user="admin"))
    assert "aiia:platform.dashboard.user='admin' names the shared account, which operators " \
           "replace" in message


def test_a_leftover_shared_password_beside_operators_is_refused_with_its_removal():
    secrets = operator_secrets(alice="a" * 16)
    with pytest.raises(ConfigError) as error:
        parse_with_operators(secrets, given={"dashboard_password", "dashboard_password_alice",
                                             "postgres_password", "prod_db_password",
                                             "prod_redis_password", "staging_db_password",
                                             "staging_redis_password"},
                             operators=["alice"])
    message = str(error.value)
    assert "aiia:dashboard_password is the shared account's" in message
    assert "`pulumi config rm -s prod aiia:dashboard_password`" in message
    assert "is not a setting" not in message


def test_an_operator_password_in_plain_text_is_refused():
    raw = raw_config("prod")
    with_dashboard(operators=["alice"])(raw)
    secrets = operator_secrets(alice="a" * 16)
    with pytest.raises(ConfigError, match="aiia:dashboard_password_alice is in the stack file "
                                          "in plain text"):
        parse_settings("prod", raw, secrets, given_keys=set(raw) | {
            "dashboard_password_alice", "postgres_password", "prod_db_password",
            "prod_redis_password", "staging_db_password", "staging_redis_password"},
            secret_keys={"postgres_password", "prod_db_password", "prod_redis_password",
                         "staging_db_password", "staging_redis_password"})


def test_the_allowlist_is_kept_as_networks_in_their_canonical_form():
    dashboard = parse("prod", with_dashboard(
        allow_from=["203.0.113.7", "198.51.100.0/24", "2001:DB8::/48"])).platform.dashboard
    assert dashboard.allow_from == ("203.0.113.7/32", "198.51.100.0/24", "2001:db8::/48")
    assert parse("prod").platform.dashboard.allow_from == ()  # open, as before


@pytest.mark.parametrize("entry", ["203.0.113.7/24", "203.0.113.300", "example.com", "",
                                   "10.0.0.0/33"])
def test_an_allowlist_entry_that_is_no_network_is_refused(entry):
    message = problems("prod", with_dashboard(allow_from=[entry]))
    assert f"aiia:platform.dashboard.allow_from: {entry!r} is not an address or a CIDR " \
           "range" in message


def test_the_allowlist_must_be_a_list():
    message = problems("prod", with_dashboard(allow_from="203.0.113.7"))
    assert "aiia:platform.dashboard.allow_from='203.0.113.7' must be a list" in message


def test_a_removed_operator_s_password_left_in_the_stack_is_named_with_its_removal():
    secrets = operator_secrets(alice="a" * 16)
    platform_secrets = {"postgres_password", "prod_db_password", "prod_redis_password",
                        "staging_db_password", "staging_redis_password"}
    with pytest.raises(ConfigError) as error:
        parse_with_operators(secrets, given={"dashboard_password_alice",
                                             "dashboard_password_bob", *platform_secrets},
                             operators=["alice"])
    message = str(error.value)
    assert "aiia:dashboard_password_bob is the password of no operator in " \
           "aiia:platform.dashboard.operators" in message
    assert "`pulumi config rm -s prod aiia:dashboard_password_bob`" in message
    assert "dashboard_password_alice" not in message


def test_an_allowlist_entry_covering_the_platform_s_own_network_is_refused():
    message = problems("prod", with_dashboard(allow_from=["203.0.113.7", "172.30.0.0/16"]))
    assert "aiia:platform.dashboard.allow_from: 172.30.0.0/16 covers " \
           "aiia:platform.network_subnet=172.30.0.0/24" in message
    assert "aiia:platform.status_subnet=172.30.1.0/27" in message
    assert "203.0.113.7" not in message

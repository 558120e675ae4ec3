"""components/settings/platform.py: the platform section (environments, ports, services'
tuning, images), each bad value refused naming the key and the fix."""

import pytest

from components.settings import ConfigError
from tests.harness.settings import parse, problems, problems_of, secrets_of


@pytest.mark.parametrize("domain", ["api..example.com", "-api.example.com", "API example.com",
                                    "localhost", "x" * 64 + ".example.com"])
def test_malformed_domain(domain):
    def bad_domain(raw):
        raw["platform"]["environments"]["staging"]["domain"] = domain

    message = problems("prod", bad_domain)
    assert f"aiia:platform.environments.staging.domain={domain!r} is not a valid domain" in message


def test_duplicate_port():
    def same_port(raw):
        raw["platform"]["environments"]["staging"]["port"] = 8000

    message = problems("prod", same_port)
    assert "aiia:platform.environments.staging.port=8000 is already used by" in message
    assert "aiia:platform.environments.prod.port" in message


def test_port_clashing_with_a_platform_service():
    def clash(raw):
        raw["platform"]["environments"]["staging"]["port"] = 6432

    assert "staging.port=6432 clashes with pgbouncer" in problems("prod", clash)


def test_missing_secret_names_the_command_that_sets_it():
    values = secrets_of("prod")

    def without_staging_db(key):
        return None if key == "staging_db_password" else values(key)

    message = problems("prod", secrets=without_staging_db)
    assert "aiia:staging_db_password is missing" in message
    assert ("`pulumi config set -s prod --secret aiia:staging_db_password "
            '"$(openssl rand -hex 32)"`') in message


def test_unknown_setting_is_named_with_the_known_ones():
    def typo(raw):
        raw["platform"]["redis"] = {"maxmemory": 50}

    message = problems("prod", typo)
    assert "aiia:platform.redis.maxmemory is not a setting" in message
    assert "maxmemory_mb" in message


def test_redis_maxmemory_must_leave_headroom_in_its_container():
    def tight(raw):
        raw["platform"]["redis"] = {"memory_mb": 50, "maxmemory_mb": 50}

    assert "must be below its container limit" in problems("prod", tight)


def test_postgres_shared_buffers_must_fit_its_container():
    def huge(raw):
        raw["platform"]["postgres"] = {"shared_buffers_mb": 128}

    assert "shared_buffers_mb=128 is more than half" in problems("prod", huge)


@pytest.mark.parametrize(("nginx", "expected"), [
    ({"keepalive_timeout_seconds": 0}, "keepalive_timeout_seconds=0 must be between 1 and 300"),
    ({"keepalive_timeout_seconds": 301}, "keepalive_timeout_seconds=301 must be between"),
    ({"keepalive_min_timeout_seconds": 11},
     "keepalive_min_timeout_seconds=11 must be between 0 and keepalive_timeout_seconds=10"),
    ({"keepalive_min_timeout_seconds": -1}, "keepalive_min_timeout_seconds=-1 must be between"),
    ({"keepalive_timeout_seconds": 60},
     "worker_shutdown_timeout_seconds=60 must be longer than the 60 s an old worker keeps"),
    ({"keepalive_min_timeout_seconds": "soon"},
     "keepalive_min_timeout_seconds='soon' must be a whole number"),
])
def test_keepalive_settings_out_of_range_are_refused(nginx, expected):
    def tune(raw):
        raw["platform"]["nginx"] = nginx

    assert f"aiia:platform.nginx.{expected}" in problems("prod", tune)


def test_keepalive_min_timeout_defaults_to_keepalive_timeout_and_may_be_zero():
    assert parse("prod").platform.nginx.reload_keeps_idle_seconds == 10

    def longer(raw):
        raw["platform"]["nginx"] = {"keepalive_timeout_seconds": 50,
                                    "worker_shutdown_timeout_seconds": 90}

    assert parse("prod", longer).platform.nginx.reload_keeps_idle_seconds == 50

    def zero(raw):
        raw["platform"]["nginx"] = {"keepalive_min_timeout_seconds": "0"}

    assert parse("prod", zero).platform.nginx.reload_keeps_idle_seconds == 0


@pytest.mark.parametrize(("service", "reference"), [
    ("nginx", "nginx:latest"), ("nginx", "nginx"), ("nginx", "nginx:1"),
    ("nginx", "nginx:1.27-bookworm"), ("redis", "redis:7-bookworm"),
    ("redis", "valkey/valkey:8.1"), ("redis", "valkey/valkey:8.1-trixie"),
    ("postgres", "postgres:15"), ("postgres", "postgres:15-bookworm"),
    ("pgbouncer", "edoburu/pgbouncer:latest"), ("certbot", "certbot/certbot:v3"),
])
def test_a_platform_image_not_pinned_to_an_exact_release_is_refused(service, reference):
    def moving(raw):
        raw["platform"].setdefault("images", {})[service] = reference

    message = problems("prod", moving)
    assert f"aiia:platform.images.{service}={reference!r} is not pinned to an exact release" \
        in message
    assert "use the full version" in message


@pytest.mark.parametrize(("service", "reference"), [
    ("nginx", "nginx:1.27.3-bookworm"), ("nginx", "nginx:1.30.0"),
    ("postgres", "postgres:17.12-trixie"), ("postgres", "postgres:17.12"),
    ("postgres", "postgres:17.12-trixie@sha256:" + "b" * 64),
    ("pgbouncer", "edoburu/pgbouncer:v1.23.1-p3"), ("redis", "redis:7.2.11-bookworm"),
    ("redis", "valkey/valkey:8.1.11-trixie"),
    ("nginx", "nginx@sha256:" + "a" * 64),
])
def test_exact_releases_and_digests_are_accepted(service, reference):
    def pinned(raw):
        raw["platform"].setdefault("images", {})[service] = reference

    assert parse("prod", pinned).platform.images.__dict__[service] == reference


def test_a_domain_serves_one_site():
    message = problems_of(lambda raw: raw["platform"]["environments"]["staging"].update(
        domain="api.eduaiia.com"))
    assert ("aiia:platform.environments.staging.domain='api.eduaiia.com' is already "
            "aiia:platform.environments.prod.domain's") in message
    message = problems_of(lambda raw: raw["platform"].update(status_domain="api.eduaiia.com"))
    assert "aiia:platform.status_domain='api.eduaiia.com' is already" in message


def with_secret(key: str, value: str):
    values = secrets_of("prod")
    return lambda asked: value if asked == key else values(asked)


def secret_problems(key: str, value: str) -> str:
    """The problems of the prod stack whose secret `key` is `value`, its plain text read as
    a program's run reads it."""
    from components.settings import parse_settings
    from tests.harness.settings import raw_config

    secrets = with_secret(key, value)
    with pytest.raises(ConfigError) as error:
        parse_settings("prod", raw_config("prod"), secrets, secret_text=secrets)
    return str(error.value)


def test_a_short_dashboard_password_is_refused_with_the_command_that_sets_a_long_one():
    """Review L8: the password alone guards the status site from the internet."""
    message = secret_problems("dashboard_password", "admin123")
    assert "aiia:dashboard_password has 8 characters" in message
    assert "at least 16" in message
    assert "openssl rand -base64 24 | pulumi config set -s prod --secret " \
           "aiia:dashboard_password" in message
    from components.settings import parse_settings
    from tests.harness.settings import raw_config

    long_enough = with_secret("dashboard_password", "x" * 16)
    parse_settings("prod", raw_config("prod"), long_enough, secret_text=long_enough)


def test_a_database_password_pgbouncer_could_only_store_in_plain_text_is_refused():
    """Review L8: PgBouncer's userlist holds the SCRAM verifier the program computes, for
    printable ASCII passwords."""
    for password in ("pässwörd-long-enough", "tab\there"):
        message = secret_problems("staging_db_password", password)
        assert "aiia:staging_db_password must be printable ASCII" in message
        assert "openssl rand -hex 32 | pulumi config set -s prod --secret " \
               "aiia:staging_db_password" in message


def test_secret_values_are_checked_from_the_plain_text_when_the_secrets_are_outputs():
    """A real run's secrets are Outputs: the checks read their plain text (secret_text)."""
    from components.settings import parse_settings
    from tests.harness.settings import raw_config

    values = secrets_of("prod")
    with pytest.raises(ConfigError, match="dashboard_password has 5 characters"):
        parse_settings("prod", raw_config("prod"), lambda key: object(),
                       secret_text=lambda key: "short" if key == "dashboard_password"
                       else values(key))

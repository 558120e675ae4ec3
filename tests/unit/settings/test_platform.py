"""Settings are validated before any resource exists; each error names key, value and fix."""

import copy

import pytest

from components.settings import ConfigError, parse_settings
from tests.harness.program import made_up_secrets, stack_config


def raw_config(stack: str) -> dict:
    """The committed stack file as the program's loader sees it (namespace stripped)."""
    return {key.split(":", 1)[1]: value for key, value in stack_config(stack).items()}


def secrets_of(stack: str):
    values = {key.split(":", 1)[1]: value
              for key, value in made_up_secrets(stack_config(stack)).items()}
    return values.get


def parse(stack: str, change=None, secrets=None):
    raw = copy.deepcopy(raw_config(stack))
    if change:
        change(raw)
    return parse_settings(stack, raw, secrets or secrets_of(stack))


def problems(stack: str, change=None, secrets=None) -> str:
    with pytest.raises(ConfigError) as error:
        parse(stack, change, secrets)
    return str(error.value)


@pytest.mark.parametrize("stack", ["prod", "staging", "local"])
def test_shipped_stack_files_are_valid(stack):
    settings = parse(stack)
    assert settings.stack == stack


@pytest.mark.parametrize("stack", ["prod", "local"])
def test_shipped_defaults_fit_a_512_mb_host_with_swap(stack):
    budget = parse(stack).budget
    assert budget.host_memory_mb == 512
    assert budget.steady_mb <= 512
    assert budget.peak_mb <= 512 + budget.host_swap_mb
    # Two app containers per environment during a release, plus the largest transient job:
    # the restore drill's migrate check, one app container of 80 MB (certbot and the backup
    # take 64).
    apps = sum(share.memory_mb for share in budget.steady if share.service.startswith("app "))
    assert {share.service for share in budget.transient} >= {
        "certbot renewal", "backup / restore drill", "restore drill check of prod"}
    assert budget.peak_mb == budget.steady_mb + apps + 80


def test_memory_over_budget_lists_every_share():
    def grow_app(raw):
        raw["platform"]["environments"]["prod"]["app_memory_mb"] = 300

    message = problems("prod", grow_app)
    assert "steady use 732 MB exceeds aiia:host.memory_mb=512" in message
    for service in ("postgres", "pgbouncer", "redis", "nginx", "dashboard", "app prod",
                    "app staging", "OS and Docker reserve"):
        assert service in message
    assert "aiia:platform.environments.prod.app_memory_mb" in message


def test_peak_over_ram_plus_swap_is_refused_even_when_steady_fits():
    def no_swap(raw):
        raw["host"]["swap_mb"] = 0

    message = problems("prod", no_swap)
    assert "peak during a release" in message
    assert "raise host.swap_mb" in message
    assert "steady use" not in message


@pytest.mark.parametrize(("tls", "expected"), [
    ({"mode": "acme"}, "aiia:platform.tls.acme_directory_url is missing"),
    ({"mode": "acme", "acme_directory_url": "http://ca.example/dir"},
     "acme_directory_url='http://ca.example/dir' must be an https:// URL"),
    ({"mode": "acme", "acme_directory_url": "https://ca.example/dir",
      "ca_bundle": "/nonexistent/ca.pem"},
     "ca_bundle='/nonexistent/ca.pem' cannot be read (No such file or directory)"),
    ({"mode": "letsencrypt", "email": "ops@example.com",
      "acme_directory_url": "https://ca.example/dir"},
     "acme_directory_url and ca_bundle are for tls.mode=acme only"),
    ({"mode": "letsencrypt", "email": "ops@example.com", "ocsp_stapling": True},
     "Let's Encrypt ended OCSP in 2025"),
    ({"mode": "letsencrypt", "email": "ops@example.com", "key_type": "dsa"},
     "key_type='dsa' must be ecdsa (P-256) or rsa (2048)"),
])
def test_bad_tls_settings_are_refused_naming_the_key_and_the_fix(tls, expected):
    def set_tls(raw):
        raw["platform"]["tls"] = tls

    assert expected in problems("prod", set_tls)


def test_a_custom_acme_ca_with_its_bundle_is_accepted(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")

    def acme(raw):
        raw["platform"]["tls"] = {"mode": "acme", "acme_directory_url": "https://ca.test/dir",
                                  "ca_bundle": str(bundle)}

    tls = parse("prod", acme).platform.tls
    assert tls.acme_directory == "https://ca.test/dir" and tls.email is None
    assert parse("prod").platform.tls.acme_directory == \
        "https://acme-v02.api.letsencrypt.org/directory"


def test_unknown_tls_mode():
    def bad_tls(raw):
        raw["platform"]["tls"]["mode"] = "acme-magic"

    message = problems("prod", bad_tls)
    assert "aiia:platform.tls.mode='acme-magic' is not a TLS mode" in message
    assert "self_signed, letsencrypt, letsencrypt_staging" in message


def test_letsencrypt_needs_an_email():
    def no_email(raw):
        del raw["platform"]["tls"]["email"]

    assert "aiia:platform.tls.email=None must be an e-mail address" in problems("prod", no_email)


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
    assert "pulumi config set --secret aiia:staging_db_password" in message


def test_missing_django_secret_key_of_a_release():
    values = secrets_of("staging")

    def without(key):
        return None if key == "staging_secret_key" else values(key)

    assert "aiia:staging_secret_key is missing" in problems("staging", secrets=without)


@pytest.mark.parametrize("tag", ["", "-leading-dash", ".dot", "has space", "a" * 129,
                                 "v1:2", "sha256:abc"])
def test_release_that_is_not_an_image_tag(tag):
    def bad_release(raw):
        raw["releases"]["prod"]["release"] = tag

    message = problems("prod", bad_release)
    assert f"aiia:releases.prod.release={tag!r} is not a valid image tag" in message


@pytest.mark.parametrize("tag", ["2026.11.26-1", "v1.2.3", "latest", "sha-0a1b2c3",
                                 "sha256:" + "a" * 64])
def test_valid_release_tags(tag):
    def release(raw):
        raw["releases"]["prod"]["release"] = tag

    assert parse("prod", release).releases[0].release == tag


def test_every_problem_is_reported_at_once():
    def many(raw):
        raw["platform"]["tls"]["mode"] = "nope"
        raw["platform"]["status_domain"] = "bad_domain"
        raw["releases"]["prod"]["release"] = "bad tag"

    error_text = problems("prod", many)
    assert "3 problem(s)" in error_text


def test_unknown_setting_is_named_with_the_known_ones():
    def typo(raw):
        raw["platform"]["redis"] = {"maxmemory": 50}

    message = problems("prod", typo)
    assert "aiia:platform.redis.maxmemory is not a setting" in message
    assert "maxmemory_mb" in message


def test_staging_must_name_the_platform_stack():
    def no_reference(raw):
        del raw["platform_stack"]

    assert "aiia:platform_stack=None must name the stack" in problems("staging", no_reference)


def test_release_of_an_environment_the_platform_does_not_serve():
    def extra(raw):
        raw["releases"]["qa"] = {"image": "ghcr.io/x/y", "release": "1"}

    def with_qa_secret(key):
        return "k" if key == "qa_secret_key" else secrets_of("prod")(key)

    message = problems("prod", extra, with_qa_secret)
    assert "aiia:releases.qa names an environment the platform does not serve" in message


def test_redis_maxmemory_must_leave_headroom_in_its_container():
    def tight(raw):
        raw["platform"]["redis"] = {"memory_mb": 50, "maxmemory_mb": 50}

    assert "must be below its container limit" in problems("prod", tight)


def test_postgres_shared_buffers_must_fit_its_container():
    def huge(raw):
        raw["platform"]["postgres"] = {"shared_buffers_mb": 128}

    assert "shared_buffers_mb=128 is more than half" in problems("prod", huge)


@pytest.mark.parametrize("key,value", [("watch_seconds", 601), ("watch_max_error_percent", 101),
                                       ("keep_images", 0), ("stop_grace_seconds", 0)])
def test_release_tuning_out_of_range(key, value):
    def tune(raw):
        raw["releases"]["prod"][key] = value

    assert f"aiia:releases.prod.{key}={value} must be between" in problems("prod", tune)


@pytest.mark.parametrize(("run_as", "expected"), [
    ("app", "run_as='app' must be a numeric uid:gid"),
    ("10001", "run_as='10001' must be a numeric uid:gid"),
    ("0:0", "run_as='0:0' runs the app as root"),
    ("10001:0", "run_as='10001:0' runs the app as root"),
    ("0:10001", "run_as='0:10001' runs the app as root"),
])
def test_an_app_user_that_is_not_a_non_root_uid_gid_is_refused(run_as, expected):
    def run_as_(raw):
        raw["releases"]["prod"]["run_as"] = run_as

    message = problems("prod", run_as_)
    assert f"aiia:releases.prod.{expected}" in message
    if "root" in expected:
        assert "aiia:releases.prod.allow_root=true" in message


def test_root_is_accepted_only_when_allowed_explicitly():
    def allowed(raw):
        raw["releases"]["prod"].update(run_as="0:0", allow_root="true")

    (release,) = parse("prod", allowed).releases
    assert (release.run_as, release.allow_root) == ("0:0", True)
    (default,) = parse("prod").releases
    assert (default.run_as, default.allow_root) == ("10001:10001", False)


def test_a_watch_longer_than_nginx_keeps_old_workers_is_refused():
    def long_watch(raw):
        raw["releases"]["prod"]["watch_seconds"] = 58

    message = problems("prod", long_watch)
    assert "aiia:releases.prod.watch_seconds=58 plus the 5 s drain" in message
    assert "worker_shutdown_timeout_seconds=60" in message


@pytest.mark.parametrize(("nginx", "expected"), [
    ({"keepalive_timeout_seconds": 0}, "keepalive_timeout_seconds=0 must be between 1 and 300"),
    ({"keepalive_timeout_seconds": 301}, "keepalive_timeout_seconds=301 must be between"),
    ({"keepalive_min_timeout_seconds": 31},
     "keepalive_min_timeout_seconds=31 must be between 0 and keepalive_timeout_seconds=30"),
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
    assert parse("prod").platform.nginx.reload_keeps_idle_seconds == 30

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
    ("postgres", "postgres:15.20-bookworm"), ("postgres", "postgres:15.20"),
    ("pgbouncer", "edoburu/pgbouncer:v1.23.1-p3"), ("redis", "redis:7.2.11-bookworm"),
    ("nginx", "nginx@sha256:" + "a" * 64),
])
def test_exact_releases_and_digests_are_accepted(service, reference):
    def pinned(raw):
        raw["platform"].setdefault("images", {})[service] = reference

    assert parse("prod", pinned).platform.images.__dict__[service] == reference


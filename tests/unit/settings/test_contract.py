"""components/settings/contract.py: the image contract by config (releases.<env>.health,
port, release_header, variables, env, secrets, smoke) and its refusals."""

import pytest

from components.settings.contract import DEFAULT_VARIABLES, HealthSettings, SmokePath
from tests.harness.settings import parse, problems, secrets_of


def with_release(**values):
    def change(raw):
        raw["releases"]["prod"].update(values)
    return change


def test_unset_the_contract_is_today_s():
    contract = parse("prod").releases[0].contract
    assert contract.health is None  # today's health check command
    assert (contract.health_path, contract.health_status) == ("/healthz/", 200)
    assert contract.port is None and contract.release_header == "X-Release"
    assert dict(contract.variables) == DEFAULT_VARIABLES
    assert (contract.env, contract.secrets, contract.smoke_paths) == ((), (), ())


def test_a_contract_of_an_ordinary_django_project():
    contract = parse("prod", with_release(
        health={"path": "/ht/", "status": "204", "timeout_seconds": 5}, port="8080",
        release_header=None,
        variables={"database_url": "DATABASE_URL", "database_host": None,
                   "celery_broker_url": "CELERY_BROKER_URL", "secret_key": "DJANGO_SECRET_KEY"},
        env={"SENTRY_ENVIRONMENT": "production", "WEB_CONCURRENCY": 1, "FEATURE": True},
        smoke={"paths": ["/", {"path": "/api/", "status": 202}]},
    )).releases[0].contract
    assert contract.health == HealthSettings("/ht/", 204, 5)
    assert contract.port == 8080 and contract.release_header is None
    assert contract.name("database_url") == "DATABASE_URL"
    assert contract.name("database_host") is None
    assert contract.name("secret_key") == "DJANGO_SECRET_KEY"
    assert contract.env == (("SENTRY_ENVIRONMENT", "production"), ("WEB_CONCURRENCY", "1"),
                            ("FEATURE", "true"))
    assert contract.smoke_paths == (SmokePath("/"), SmokePath("/api/", 202))


def test_an_empty_release_header_is_none():
    assert parse("prod", with_release(release_header="")).releases[0].contract \
        .release_header is None


def test_extra_secrets_name_secret_config_keys_and_carry_their_values():
    values = secrets_of("prod")

    def secrets(key):
        return "https://key@sentry.example/1" if key == "prod_sentry_dsn" else values(key)

    contract = parse("prod", with_release(secrets={"SENTRY_DSN": "prod_sentry_dsn"}),
                     secrets=secrets).releases[0].contract
    assert contract.secrets == (("SENTRY_DSN", "prod_sentry_dsn",
                                 "https://key@sentry.example/1"),)


@pytest.mark.parametrize(("values", "expected"), [
    ({"health": {"path": "healthz/"}},
     "aiia:releases.prod.health.path='healthz/' must be a path starting with '/'"),
    ({"health": {"path": "/a b/"}}, "health.path='/a b/' must be a plain URL path"),
    ({"health": {"status": 302}}, "health.status=302 must be a 2xx status"),
    ({"health": {"timeout_seconds": 0}}, "health.timeout_seconds=0 must be between 1 and 30"),
    ({"health": {"pth": "/x/"}}, "aiia:releases.prod.health.pth is not a setting; did you mean"),
    ({"health": "/health/"}, "aiia:releases.prod.health='/health/' must be an object"),
    ({"port": 70000}, "aiia:releases.prod.port=70000 must be between 1 and 65535"),
    ({"release_header": "X Release"}, "release_header='X Release' must be an HTTP header name"),
    ({"variables": {"database_url": "DATABASE-URL"}},
     "variables.database_url='DATABASE-URL' is not a valid variable name"),
    ({"variables": {"sentry": "SENTRY_DSN"}},
     "variables.sentry is not a variable the program hands over"),
    ({"variables": {"database_url": "SECRET_KEY"}},
     "variables: secret_key and database_url are both named 'SECRET_KEY'"),
    ({"env": {"2FA": "on"}}, "aiia:releases.prod.env.2FA: '2FA' is not a valid variable name"),
    ({"env": {"DATABASE_HOST": "db"}},
     "aiia:releases.prod.env.DATABASE_HOST: DATABASE_HOST is a variable the program sets"),
    ({"env": {"SECRET_KEY_FILE": "/x"}}, "SECRET_KEY_FILE is a variable the program sets"),
    ({"env": {"PGOPTIONS": "-c x=1"}}, "PGOPTIONS is a variable the program sets"),
    ({"variables": {"database_url": "DATABASE_URL"}, "env": {"DATABASE_URL": "x"}},
     "env.DATABASE_URL: DATABASE_URL is a variable the program sets"),
    ({"env": {"A": "one\ntwo"}}, "env.A holds a line break"),
    ({"env": {"A": {"b": 1}}}, "env.A={'b': 1} must be text or a number"),
    ({"secrets": {"SENTRY_DSN": "https://key@sentry.example/1"}},
     "aiia:releases.prod.secrets.SENTRY_DSN must name a secret config key, e.g. "
     "prod_sentry_dsn, not hold the value"),
    ({"secrets": {"REDIS_URL": "prod_redis_url"}},
     "secrets.REDIS_URL: REDIS_URL is a variable the program sets"),
    ({"env": {"A": "1"}, "secrets": {"A": "prod_a"}}, "secrets.A: A is a variable the program"),
    ({"secrets": {"SENTRY_DSN": "prod_sentry_dsn"}},
     "aiia:prod_sentry_dsn is missing; set it with `pulumi config set -s prod --secret "
     "aiia:prod_sentry_dsn <value>` (named by aiia:releases.prod.secrets.SENTRY_DSN)"),
    ({"smoke": {"paths": ["api/"]}}, "smoke.paths[0]='api/' must be a path starting with '/'"),
    ({"smoke": {"paths": [{"path": "/", "status": 500}]}},
     "smoke.paths[0].status=500 must be a 2xx status"),
    ({"smoke": {"path": ["/"]}}, "smoke.path is not a setting; known: paths, websockets"),
    ({"contract": {}}, "aiia:releases.prod.contract is not a setting"),
])
def test_a_bad_contract_is_refused_naming_the_key_and_the_fix(values, expected):
    assert expected in problems("prod", with_release(**values))


def extra_secret_problems(secret_keys_given_as_secrets: bool) -> str | None:
    """The stack file naming SENTRY_DSN's secret key, that key set as a secret or not."""
    from components.settings import ConfigError, parse_settings
    from tests.harness.program import made_up_secrets, stack_config
    from tests.harness.settings import raw_config

    raw = raw_config("prod")
    raw["releases"]["prod"]["secrets"] = {"SENTRY_DSN": "prod_sentry_dsn"}
    values = secrets_of("prod")
    secret_keys = [key.split(":", 1)[1] for key in made_up_secrets(stack_config("prod"))]
    given = [*raw, *secret_keys, "prod_sentry_dsn"]
    as_secrets = [*secret_keys, *(["prod_sentry_dsn"] if secret_keys_given_as_secrets else [])]
    try:
        parse_settings("prod", raw, lambda key: "dsn" if key == "prod_sentry_dsn"
                       else values(key), given_keys=given, secret_keys=as_secrets)
    except ConfigError as error:
        return str(error)
    return None


def test_an_extra_secret_given_in_plain_text_is_refused_and_as_a_secret_accepted():
    assert "aiia:prod_sentry_dsn is in the stack file in plain text" in \
        extra_secret_problems(secret_keys_given_as_secrets=False)
    assert extra_secret_problems(secret_keys_given_as_secrets=True) is None

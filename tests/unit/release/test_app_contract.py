"""components/release/app_contract.py and the release under the mocks with a contract of the
stack's own (releases.<env>.health, port, release_header, variables, env, secrets): what the
container is given, its health check (run for real against a small server), the migrations'
variables, the upstream and the watch."""

import copy
import http.server
import subprocess
import sys
import threading

import pytest

from tests.harness.program import (
    is_secret,
    made_up_secrets,
    release_container,
    run_program,
    stack_config,
)

ORDINARY_DJANGO = {
    "health": {"path": "/ht/", "status": 204, "timeout_seconds": 2},
    "port": 8080,
    "release_header": None,
    "variables": {"database_url": "DATABASE_URL", "database_host": None, "database_port": None,
                  "database_name": None, "database_user": None, "database_password": None,
                  "celery_broker_url": "CELERY_BROKER_URL",
                  "secret_key": "DJANGO_SECRET_KEY", "allowed_hosts": "DJANGO_ALLOWED_HOSTS"},
    "env": {"SENTRY_ENVIRONMENT": "production"},
    "secrets": {"SENTRY_DSN": "prod_sentry_dsn"},
}


def run_with(contract: dict, secrets_as: str):
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"].update(contract, secrets_as=secrets_as)
    secrets = made_up_secrets(config)
    if "secrets" in contract:
        secrets["aiia:prod_sentry_dsn"] = "https://k@sentry.example/1"
    return run_program("prod", config=config, secrets=secrets)


@pytest.fixture(scope="module")
def as_variables():
    return run_with(ORDINARY_DJANGO, "variables")


@pytest.fixture(scope="module")
def as_files():
    return run_with(ORDINARY_DJANGO, "files")


def envs(run) -> dict[str, str]:
    app = release_container(run, "aiia-app-prod-2026-11-26-1-")
    return dict(item.split("=", 1) for item in app.plain["envs"])


def test_the_app_gets_the_names_it_reads(as_variables):
    env = envs(as_variables)
    assert env["DATABASE_URL"] == "postgres://aiia_prod:test-prod-db@aiia-pgbouncer:6432/aiia_prod"
    assert env["CELERY_BROKER_URL"] == "redis://prod:test-prod-redis@aiia-redis:6379/0"
    assert env["REDIS_URL"] == env["CELERY_BROKER_URL"]
    assert env["DJANGO_SECRET_KEY"] == "test-prod-django-secret-key"
    assert env["DJANGO_ALLOWED_HOSTS"] == "api.eduaiia.com"
    assert env["SENTRY_ENVIRONMENT"] == "production"
    assert env["SENTRY_DSN"] == "https://k@sentry.example/1"
    assert env["PORT"] == "8080"
    # The split variables set to null are not handed over, nor the renamed ones' old names.
    for name in ("DATABASE_HOST", "DATABASE_PASSWORD", "SECRET_KEY", "ALLOWED_HOSTS"):
        assert name not in env


def test_the_variables_stay_secret(as_variables):
    app = release_container(as_variables, "aiia-app-prod-2026-11-26-1-")
    assert is_secret(app.inputs["envs"])
    (migrate,) = [r for r in as_variables.resources if r.name.startswith("app-prod-migrate-")]
    assert is_secret(migrate.inputs["stdin"])


def test_with_secrets_as_files_the_urls_and_extra_secrets_are_files(as_files):
    env = envs(as_files)
    assert env["DATABASE_URL_FILE"] == "/run/secrets/aiia/database_url"
    assert env["CELERY_BROKER_URL_FILE"] == "/run/secrets/aiia/celery_broker_url"
    assert env["SENTRY_DSN_FILE"] == "/run/secrets/aiia/extra-prod_sentry_dsn"
    assert env["DJANGO_SECRET_KEY_FILE"] == "/run/secrets/aiia/secret_key"
    assert env["REDIS_URL"] == "redis://prod@aiia-redis:6379/0"
    assert not {"DATABASE_URL", "SENTRY_DSN", "DJANGO_SECRET_KEY"} & set(env)
    files = {r.name: r.plain["stdin"] for r in as_files.resources
             if r.name.startswith("app-prod-secret-") and r.name.endswith("-install")}
    assert files["app-prod-secret-database_url-install"] == \
        "postgres://aiia_prod:test-prod-db@aiia-pgbouncer:6432/aiia_prod"
    assert files["app-prod-secret-database_url_direct-install"].startswith(
        "postgres://aiia_prod:test-prod-db@aiia-postgres:5432/")
    assert files["app-prod-secret-extra-prod_sentry_dsn-install"] == \
        "https://k@sentry.example/1"


def migrate_variables(run) -> dict[str, str]:
    (migrate,) = [r for r in run.resources if r.name.startswith("app-prod-migrate-")]
    stdin = migrate.plain["stdin"]
    return dict(line.split("=", 1) for line in stdin.split("# --- migrate ---\n")[1]
                .splitlines() if "=" in line)


def test_the_migrations_get_postgresql_itself_in_the_database_url(as_variables, as_files):
    assert migrate_variables(as_variables)["DATABASE_URL"] == \
        "postgres://aiia_prod:test-prod-db@aiia-postgres:5432/aiia_prod"
    assert migrate_variables(as_files)["DATABASE_URL_FILE"] == \
        "/run/secrets/aiia/database_url_direct"
    assert migrate_variables(as_files)["PGOPTIONS"].startswith("-c lock_timeout=")


def test_the_upstream_is_the_contract_s_port(as_variables):
    upstream = as_variables.named("app-prod-upstream-install").plain["stdin"]
    assert ":8080 max_fails=0;" in upstream


def test_the_watch_asks_the_health_path_and_recognises_the_release_by_its_address(
        as_variables, prod):
    watch = as_variables.named("app-prod-watch").plain["create"]
    assert "'https://api.eduaiia.com/ht/'" in watch and '[ "$status" = 204 ]' in watch
    assert "nginx did not send the watch" in watch
    default = prod.named("app-prod-watch").plain["create"]
    assert "'https://api.eduaiia.com/healthz/'" in default and '[ "$status" = 200 ]' in default
    assert "nginx did not send the watch's request" not in default  # X-Release is there


def test_a_configured_health_check_is_a_new_generation(as_variables, prod):
    ours = release_container(as_variables, "aiia-app-prod-2026-11-26-1-")
    default = release_container(prod, "aiia-app-prod-2026-11-26-1-")
    assert default.plain["healthcheck"]["tests"] == ["CMD", "python3", "/app/healthcheck.py"]
    assert ours.plain["healthcheck"]["tests"][:3] == ["CMD", "python3", "-c"]
    assert ours.plain["healthcheck"]["timeout"] == "3s"
    assert ours.plain["name"] != default.plain["name"]


def test_nginx_and_the_dashboard_learn_the_contract_s_health_path(as_variables, prod):
    """The release writes its health path's location (and its maintenance exception) into
    nginx before the watch asks it there, and labels the app for the dashboard's probe; a
    default contract writes the /healthz/ the platform seeds and adds no label."""
    route = as_variables.named("app-prod-health-route-install")
    assert "/srv/aiia/nginx/health/prod.conf" in route.plain["create"]
    assert 'location = "/ht/" {' in route.plain["stdin"]
    assert 'if ($uri = "/ht/") {' in route.plain["stdin"]
    assert "-s reload" in route.plain["create"]
    by_urn = {r.urn: r.name for r in as_variables.resources}
    assert "app-prod-health-route-install" in {
        by_urn[d] for d in as_variables.named("app-prod-watch").dependencies}

    def labels(run) -> dict[str, str]:
        app = release_container(run, "aiia-app-prod-2026-11-26-1-")
        return {item["label"]: item["value"] for item in app.plain["labels"]}

    assert labels(as_variables)["aiia.health.path"] == "/ht/"
    assert "aiia.health.path" not in labels(prod)
    assert 'location = "/healthz/" {' in prod.named("app-prod-health-route-install") \
        .plain["stdin"]
    seed = prod.named("platform-nginx-health-prod-install")
    assert 'location = "/healthz/" {' in seed.plain["stdin"]
    assert "-s reload" not in seed.plain["create"]  # only if absent: the release owns it


def test_a_health_path_nginx_cannot_name_is_refused():
    from tests.harness.settings import problems_of

    def bad(raw):
        raw["releases"]["prod"]["health"] = {"path": "/a%22b/"}
    problems = problems_of(bad)
    assert "health.path='/a%22b/' decodes to '/a\"b/'" in problems
    assert "without percent-encoding" in problems

    def maintenance_page(raw):
        raw["releases"]["prod"]["health"] = {"path": "/aiia-maintenance.html?x=1"}
    assert "is a path nginx answers itself (the maintenance page)" in problems_of(
        maintenance_page)


class _App(http.server.BaseHTTPRequestHandler):
    """Answers the health path with 204 only for its own domain (ALLOWED_HOSTS)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        ok = self.path == "/ht/" and self.headers["Host"] == "api.eduaiia.com" and \
            self.headers["X-Forwarded-Proto"] == "https"
        self.send_response(204 if ok else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


def run_probe(command: list[str], port: int) -> subprocess.CompletedProcess:
    assert command[:3] == ["CMD", "python3", "-c"]
    code = command[3].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, env={"HTTP_PROXY": "http://127.0.0.1:9"})


def test_the_health_check_needs_nothing_in_the_image_and_sends_the_domain(as_variables):
    command = release_container(as_variables, "aiia-app-prod-2026-11-26-1-") \
        .plain["healthcheck"]["tests"]
    server = http.server.HTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        passed = run_probe(command, server.server_port)
        assert passed.returncode == 0, passed.stderr
        wrong = run_probe(command[:3] + [command[3].replace("/ht/", "/nope/")],
                          server.server_port)
        assert wrong.returncode == 1 and "answered 400, not 204" in wrong.stderr
    finally:
        server.shutdown()
        server.server_close()
    refused = run_probe(command, server.server_port)
    assert refused.returncode == 1, refused.stderr
    assert f"health check: http://127.0.0.1:{server.server_port}/ht/:" in refused.stderr


@pytest.mark.parametrize(("log_file", "expected"), [
    ("DJANGO_LOG_FILE", "--env DJANGO_LOG_FILE= "), (None, None)])
def test_the_release_jobs_unset_the_log_file_under_its_own_name(log_file, expected):
    run = run_with({"variables": {"log_file": log_file}}, "files")
    (migrate,) = [r for r in run.resources if r.name.startswith("app-prod-migrate-")]
    script = migrate.plain["create"]
    assert "--env LOG_FILE=" not in script
    if expected:
        assert expected in script
    else:
        assert "--env-file \"$step_env_file\" \\" in script


def test_an_extra_secret_in_plain_text_in_the_stack_file_stops_the_preview():
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"]["secrets"] = {"SENTRY_DSN": "prod_sentry_dsn"}
    config["aiia:prod_sentry_dsn"] = "https://k@sentry.example/1"  # not a secret
    with pytest.raises(Exception, match="aiia:prod_sentry_dsn is in the stack file in plain "
                                        "text") as error:
        run_program("prod", config=config, secrets=made_up_secrets(config))
    assert type(error.value).__name__ == "RunError"

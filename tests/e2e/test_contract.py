"""The image contract by config on the real engine (issue 27 item 1): an image that keeps
none of the defaults (tests/e2e/images/ordinary: DATABASE_URL, its own variable names, health
at /ht/ answering 204 only for its domain, no X-Release, no /app/healthcheck.py, port 8080)
is released with the contract set in the stack config alone, checked by the smoke test, and
rolled back to the reference app by putting the previous config back."""

import copy
import json
import subprocess
import sys

import pytest

from tests.harness.program import ROOT
from tests.harness.traffic import under_load

pytestmark = pytest.mark.e2e

CONTRACT = {
    "health": {"path": "/ht/", "status": 204},
    "port": 8080,
    "release_header": None,
    "secrets_as": "variables",
    "variables": {"database_url": "DATABASE_URL", "database_host": None,
                  "database_port": None, "database_name": None, "database_user": None,
                  "database_password": None, "secret_key": "DJANGO_SECRET_KEY",
                  "allowed_hosts": "DJANGO_ALLOWED_HOSTS"},
    "env": {"SENTRY_ENVIRONMENT": "e2e"},
    "secrets": {"SENTRY_DSN": "prod_sentry_dsn"},
    "smoke": {"paths": ["/"]},
}


def ordinary(stack) -> dict:
    config = stack.with_release("prod", "ordinary")
    config["aiia:releases"]["prod"].update(copy.deepcopy(CONTRACT))
    return config


def served(stack, path: str) -> list[dict]:
    lines = (stack.root / "logs/nginx/access.log").read_text().splitlines()
    return [record for record in map(json.loads, lines)
            if record.get("env") == "prod" and record.get("uri") == path]


def smoke(stack, *contract: str) -> subprocess.CompletedProcess:
    domain = stack.domain("prod")
    return subprocess.run(
        [sys.executable, "-m", "scripts.smoke", "--url", f"https://{domain}:{stack.https_port}",
         "--resolve", f"{domain}:{stack.https_port}:127.0.0.1",
         "--cafile", str(stack.root / "nginx/tls" / domain / "fullchain.pem"),
         "--release", "ordinary", "--attempts", "1", *contract],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_an_ordinary_django_image_is_released_with_the_contract_by_config(local_stack):
    stack = local_stack
    stack.secrets["aiia:prod_sentry_dsn"] = "https://key@sentry.example/1"
    # GET / through nginx all along (the reference app's and the ordinary one's front page).
    load, error = under_load(stack, lambda: stack.up(ordinary(stack)), rate=20, total=20 * 60)
    assert error is None, error
    health = stack.get("prod", "/ht/")
    assert health.status == 204 and "x-release" not in health.headers
    container = stack.run.stack_outputs["prod_container"]
    assert container.startswith(f"{stack.prefix}-app-prod-ordinary-")
    # Nothing of the program's in the image: its health check is python3 -c, and healthy.
    assert stack.exec(container, "test", "-e", "/app/healthcheck.py", check=False) \
        .returncode == 1
    inspect = json.loads(subprocess.run(["docker", "inspect", container], check=True,
                                        capture_output=True, text=True).stdout)[0]
    assert inspect["Config"]["Healthcheck"]["Test"][:3] == ["CMD", "python3", "-c"]
    assert inspect["State"]["Health"]["Status"] == "healthy"
    environment = dict(item.split("=", 1) for item in inspect["Config"]["Env"])
    assert environment["DATABASE_URL"].startswith("postgres://")
    assert environment["SENTRY_DSN"] == "https://key@sentry.example/1"
    assert "DATABASE_HOST" not in environment and "SECRET_KEY" not in environment
    # The database through DATABASE_URL: the notes API writes and reads.
    created = stack.get("prod", "/api/notes/", method="POST", body=b'{"text": "ordinary"}',
                        headers={"Content-Type": "application/json"})
    assert created.status == 201, created.body
    # The watch recognised the release by the address nginx sent its requests to.
    address = (stack.root / "nginx/upstreams/prod.conf").read_text()
    assert any(record["upstream"] in address for record in served(stack, "/ht/"))
    summary = load.summary()
    assert summary.failures == 0, summary.failure_kinds
    # The smoke test of the pipeline asks what this contract asks, and passes.
    passed = smoke(stack, "--health-path", "/ht/", "--health-status", "204",
                   "--release-header", "", "--path", "/")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    # With the default contract it would have rolled this app back.
    assert smoke(stack).returncode == 1


def test_rollback_to_the_reference_app_is_the_previous_config(local_stack):
    stack = local_stack
    config = stack.with_release("prod", "release-a")
    for key in CONTRACT:
        config["aiia:releases"]["prod"].pop(key, None)
    config["aiia:releases"]["prod"]["smoke"] = {"paths": ["/"], "websockets": ["/ws/echo/"]}
    # A secret no release names is refused (aiia:… is not a setting): the config's previous
    # state had none.
    stack.secrets.pop("aiia:prod_sentry_dsn")
    stack.up(config)
    assert stack.get("prod", "/healthz/").headers["x-release"] == "release-a"
    assert stack.get("prod", "/ht/").status == 404

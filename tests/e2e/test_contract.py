"""The image contract by config on the real engine (issue 27 items 1, 2 and 6): an image that
keeps none of the defaults (tests/e2e/images/ordinary: DATABASE_URL, its own variable names,
health at /ht/ answering 204 only for its domain, no X-Release, no /app/healthcheck.py, port
8080) is released with the contract set in the stack config alone, checked by the smoke test,
and rolled back to the reference app by putting the previous config back; then a stock Django
project with a Celery worker (tests/e2e/images/stock) is deployed, released and rolled back
under load, its worker a process of the release (releases.prod.processes)."""

import copy
import json
import subprocess
import sys
import time

import pytest

from tests.harness.local_stack import (
    app_repository,
    remove_everything,
    start_local_stack,
    tag_image,
)
from tests.harness.program import ROOT
from tests.harness.replay import ReplayError
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


# What the stock project needs of the platform, set when the stack is made (as an operator
# sets it before the first up): 96 MB for prod's processes — on a host given 96 MB more, as
# the budget asks — and Lua for prod's Redis user (kombu's unacked mutex is a redis-py lock,
# released by a script).
def reserve_for_a_worker(config: dict) -> None:
    config["aiia:host"]["memory_mb"] += 96
    prod = config["aiia:platform"]["environments"]["prod"]
    prod["processes_memory_mb"] = 96
    prod["redis_scripting"] = True


@pytest.fixture(scope="module")
def local_stack(engine, app_images, dashboard_image):
    stack = start_local_stack(engine, app_images, change=reserve_for_a_worker)
    try:
        yield stack
    finally:
        remove_everything(engine, stack.prefix, stack.root)


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


WORKER = ("celery -A shop worker -l info --pool solo --without-mingle --without-gossip "
          "--without-heartbeat")
# All the stock project needed: its health path, its port and its variable names, and its
# worker as a process of the release.
STOCK = {
    "health": {"path": "/ht/"},
    "port": 8000,
    "release_header": None,
    "secrets_as": "variables",
    "variables": {"database_url": "DATABASE_URL", "database_host": None,
                  "database_port": None, "database_name": None, "database_user": None,
                  "database_password": None, "secret_key": "DJANGO_SECRET_KEY",
                  "allowed_hosts": "DJANGO_ALLOWED_HOSTS"},
    "processes": {"worker": {"command": WORKER, "memory_mb": 96, "stop_grace_seconds": 20}},
    "smoke": {"paths": ["/"]},
}


def stock(stack, release: str, **changes) -> dict:
    config = stack.with_release("prod", release)
    for key in CONTRACT:
        config["aiia:releases"]["prod"].pop(key, None)
    config["aiia:releases"]["prod"].update(copy.deepcopy(STOCK), **changes)
    return config


def processes(stack) -> dict[str, dict]:
    """The prod worker containers on the engine: name → (release label, state, health)."""
    names = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=aiia.stack={stack.prefix}",
         "--filter", "label=aiia.process=worker", "--format", "{{.Names}}"],
        check=True, capture_output=True, text=True).stdout.split()
    result = {}
    for name in names:
        details = json.loads(subprocess.run(["docker", "inspect", name], check=True,
                                            capture_output=True, text=True).stdout)[0]
        result[name] = {"release": details["Config"]["Labels"]["aiia.release"],
                        "running": details["State"]["Running"],
                        "health": (details["State"].get("Health") or {}).get("Status"),
                        "memory_mb": details["HostConfig"]["Memory"] // 2**20,
                        "cmd": details["Config"]["Cmd"]}
    return result


def fulfilled_by_the_worker(stack, reference: str, timeout: float = 60) -> bool:
    """The web view enqueues an order; only the worker writes its row."""
    placed = stack.get("prod", "/orders/", method="POST",
                       body=f"reference={reference}".encode(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert placed.status == 202, placed.body
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.get("prod", f"/orders/{reference}/").status == 200:
            return True
        time.sleep(1)
    return False


def released_under_load(stack, config: dict) -> None:
    load, error = under_load(stack, lambda: stack.up(config), rate=20, total=20 * 60)
    assert error is None, error
    summary = load.summary()
    assert summary.failures == 0, summary.failure_kinds


def test_a_stock_django_project_and_its_worker_are_deployed_released_and_rolled_back(
        local_stack):
    stack = local_stack
    tag_image(stack.engine, "aiia-e2e-app:stock", f"{app_repository(stack.prefix)}:stock-2")
    # Deployed (from the reference app) with the stack config alone.
    released_under_load(stack, stock(stack, "stock"))
    assert stack.get("prod", "/ht/").status == 200
    (first,) = processes(stack).values()
    assert first["release"] == "stock" and first["running"] and first["health"] == "healthy"
    assert first["memory_mb"] == 96 and first["cmd"] == WORKER.split()
    assert fulfilled_by_the_worker(stack, "order-1")
    # Released: the worker follows the web container; the old one is gone.
    released_under_load(stack, stock(stack, "stock-2"))
    (second,) = processes(stack).values()
    assert second["release"] == "stock-2" and second["health"] == "healthy"
    assert fulfilled_by_the_worker(stack, "order-2")
    # A worker that cannot run fails the release before the switch: stock-2 serves on.
    upstream = (stack.root / "nginx/upstreams/prod.conf").read_text()
    broken = {"worker": {"command": "python3 -c 'raise SystemExit(3)'", "memory_mb": 96}}
    with pytest.raises(ReplayError, match="worker"):
        stack.up(stock(stack, "stock", processes=broken))
    assert (stack.root / "nginx/upstreams/prod.conf").read_text() == upstream
    serving = [p for p in processes(stack).values() if p["release"] == "stock-2"]
    assert serving and serving[0]["running"]
    assert fulfilled_by_the_worker(stack, "order-3")
    # Rolled back: the previous config, the previous release's worker with it.
    released_under_load(stack, stock(stack, "stock"))
    workers = processes(stack)
    assert [p["release"] for p in workers.values()] == ["stock"], workers
    assert fulfilled_by_the_worker(stack, "order-4")
    # Maintenance with the stock app's own health path (#27 item 4): the release's watch asks
    # /ht/ through nginx and passes, visitors get the page, the health path reaches the app,
    # and the app's container tells the dashboard's probe which path to ask.
    stack.up(stock(stack, "stock-2", maintenance=True))
    assert stack.get("prod", "/").status == 503
    assert stack.get("prod", "/ht/").status == 200
    assert 'location = "/ht/" {' in (stack.root / "nginx/health/prod.conf").read_text()
    container = stack.run.stack_outputs["prod_container"]
    labels = json.loads(subprocess.run(["docker", "inspect", container], check=True,
                                       capture_output=True, text=True).stdout)[0]
    assert labels["Config"]["Labels"]["aiia.health.path"] == "/ht/"

"""Checks that each variant image misbehaves exactly as tests/e2e/images/README.md says, on a
local stack of its own (test scaffolding; run by hand after tests/e2e/build-images.sh):

    python3 tests/e2e/images/check_variants.py

Each variant runs with the prod app container's own environment (database, cache, …) on
the stack's network, beside the running release, through `docker run`; nothing goes
through nginx and the program is not involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.harness.engine import DockerEngine  # noqa: E402
from tests.harness.local_stack import (  # noqa: E402
    LocalStack,
    release_tags,
    remove_everything,
    start_local_stack,
)

IMAGE = "aiia-e2e-app"
# Runs inside a variant's container: (status, X-Release) of a GET to the app itself.
PROBE = """
import sys, urllib.request, urllib.error
try:
    request = urllib.request.Request("http://127.0.0.1:8000" + sys.argv[1],
                                     headers={"Host": sys.argv[2]})
    response = urllib.request.urlopen(request, timeout=5)
    print(response.status, response.headers.get("X-Release"))
except urllib.error.HTTPError as error:
    print(error.code, error.headers.get("X-Release"))
"""


def docker(*arguments: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=180,
                          check=check)


def prod_app(stack: LocalStack) -> dict:
    (name,) = [n for n in stack.run.containers() if "-app-prod-" in n]
    return stack.engine.container(name)


def run_args(stack: LocalStack, release: str) -> list[str]:
    app = prod_app(stack)
    environment = [e for e in app["Config"]["Env"] if e.split("=", 1)[0] not in (
        "RELEASE", "LOG_FILE", "PATH")]
    network = next(iter(app["NetworkSettings"]["Networks"]))
    arguments = ["--network", network, "-e", f"RELEASE={release}"]
    for variable in environment:
        arguments += ["-e", variable]
    return arguments


def probe(container: str, path: str, host: str) -> str:
    """As nginx asks: with the environment's domain as Host (ALLOWED_HOSTS)."""
    return docker("exec", container, "python3", "-c", PROBE, path, host).stdout.strip()


def health(container: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()


def wait_health(container: str, wanted: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = health(container)
        if status == wanted:
            return status
        time.sleep(1)
    return health(container)


def serve(stack: LocalStack, variant: str) -> str:
    name = f"{stack.prefix}-variant-{variant}"
    docker("run", "-d", "--name", name, *run_args(stack, variant), f"{IMAGE}:{variant}",
           check=True)
    return name


def psql(stack: LocalStack, sql: str) -> str:
    """A query as prod's own role, through PgBouncer, from a client in the postgres image."""
    password = stack.secrets["aiia:prod_db_password"]
    database = f"{stack.prefix}_prod"
    result = stack.exec(stack.container("postgres"), "env", f"PGPASSWORD={password}", "psql",
                        "-h", stack.container("pgbouncer"), "-p", "6432", "-U", database,
                        "-d", database, "-tAc", sql, check=False)
    return (result.stdout + result.stderr).strip()


def migrate(stack: LocalStack, image: str, release: str) -> subprocess.CompletedProcess:
    return docker("run", "--rm", *run_args(stack, release), image,
                  "python3", "manage.py", "migrate", "--noinput")


def check(results: list[tuple[str, bool, str]], what: str, ok: bool, detail: str) -> None:
    results.append((what, ok, detail))
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: {detail}", flush=True)


def main() -> int:
    engine = DockerEngine()
    releases = release_tags(engine)
    stack = start_local_stack(engine, releases)
    results: list[tuple[str, bool, str]] = []
    domain = stack.domain("prod")
    try:
        print("== broken")
        broken = serve(stack, "broken")
        check(results, "broken becomes healthy", wait_health(broken, "healthy", 60) == "healthy",
              health(broken))
        for path, wanted in (("/healthz/", "200 broken"), ("/", "500 broken"),
                             ("/api/notes/", "500 broken")):
            answer = probe(broken, path, domain)
            check(results, f"broken GET {path}", answer == wanted, answer)

        print("== unhealthy")
        unhealthy = serve(stack, "unhealthy")
        time.sleep(8)
        for path, wanted in (("/healthz/", "200 unhealthy"), ("/", "200 unhealthy")):
            answer = probe(unhealthy, path, domain)
            check(results, f"unhealthy GET {path}", answer == wanted, answer)
        # The image's own HEALTHCHECK: 20 s start period, then 3 failures 10 s apart.
        status = wait_health(unhealthy, "unhealthy", 90)
        check(results, "unhealthy never becomes healthy", status == "unhealthy", status)

        print("== bad-migration")
        result = migrate(stack, f"{IMAGE}:bad-migration", "bad-migration")
        check(results, "bad-migration: migrate exits non-zero", result.returncode != 0,
              f"exit {result.returncode}: "
              f"{(result.stderr.strip().splitlines() or [''])[-1][:160]}")
        leftover = psql(stack, "SELECT to_regclass('notes_never_created') IS NULL")
        check(results, "bad-migration leaves no table behind", leftover == "t", leftover)
        recorded = psql(stack, "SELECT count(*) FROM django_migrations "
                        "WHERE name = '0002_fails_on_purpose'")
        check(results, "bad-migration is not recorded as applied", recorded == "0", recorded)

        print("== schema-b")
        before = psql(stack, "SELECT to_regclass('notes_release_b_marker') IS NULL")
        result = migrate(stack, f"{IMAGE}:schema-b", "schema-b")
        after = psql(stack, "SELECT to_regclass('notes_release_b_marker') IS NOT NULL")
        check(results, "schema-b: migrate succeeds and creates the table",
              result.returncode == 0 and before == "t" and after == "t",
              f"exit {result.returncode}, absent before: {before}, present after: {after}")
        schema_b = serve(stack, "schema-b")
        status = wait_health(schema_b, "healthy", 60)
        check(results, "schema-b serves", status == "healthy"
              and probe(schema_b, "/api/notes/", domain) == "200 schema-b", status)
        # Rolling back: release A's migrate and app still work on B's (additive) schema.
        result = migrate(stack, f"{IMAGE}:build", "release-a")
        answer = stack.get("prod", "/api/notes/")
        check(results, "release A on schema B: migrate succeeds, /api/notes/ answers",
              result.returncode == 0 and answer.status == 200,
              f"exit {result.returncode}, GET /api/notes/ {answer.status} "
              f"{answer.headers.get('x-release')}")
        created = stack.get("prod", "/api/notes/", method="POST",
                            body=json.dumps({"text": "on schema B"}).encode(),
                            headers={"Content-Type": "application/json"})
        check(results, "release A on schema B writes", created.status == 201,
              str(created.status))
    finally:
        remove_everything(engine, stack.prefix, stack.root)
    failed = [what for what, ok, _ in results if not ok]
    print(f"\n{len(results) - len(failed)} of {len(results)} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The delivery scripts against the local stack replayed on the real engine, as the release
workflow runs them: scripts/release.py commits a release and runs `pulumi up`, the smoke
test checks it through nginx, and a release whose smoke test fails is rolled back by
scripts/rollback.py (a revert commit, `pulumi up` again) so the environment serves the
previous release. `pulumi` is the test stand-in (tests/harness/pulumi_standin.py) that
drives the replay; git runs for real in a scratch repository holding the stack file.
The tests run in order on one stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.pulumi_standin import PulumiStandIn

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Release Bot", "GIT_AUTHOR_EMAIL": "bot@example.invalid",
                "GIT_COMMITTER_NAME": "Release Bot", "GIT_COMMITTER_EMAIL": "bot@example.invalid"}


@pytest.fixture(scope="module")
def delivery(local_stack, tmp_path_factory):
    """(stack, repository, stand-in): the stack's config committed as Pulumi.local.yaml."""
    repo = tmp_path_factory.mktemp("delivery")
    (repo / "Pulumi.local.yaml").write_text(
        "# The e2e local stack's config (tests/harness/local_stack.py)\n"
        + yaml.safe_dump({"config": local_stack.config}, sort_keys=False))
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "stack"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env={**os.environ, **GIT_IDENTITY})

    def up(stack: str, config: dict) -> None:
        assert stack == "local", stack
        local_stack.up(config)

    with PulumiStandIn(repo, up, local_stack.secrets) as stand_in:
        yield local_stack, repo, stand_in


def script(delivery, module: str, *args: str) -> subprocess.CompletedProcess:
    stack, repo, stand_in = delivery
    env = {**os.environ, **GIT_IDENTITY, **stand_in.environment(), "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_OUTPUT", None)
    result = subprocess.run([sys.executable, "-m", f"scripts.{module}", *args], cwd=repo,
                            env=env, capture_output=True, text=True, timeout=600)
    print(result.stdout, result.stderr)
    return result


def smoke(delivery, release: str) -> subprocess.CompletedProcess:
    stack = delivery[0]
    domain = stack.domain("prod")
    return script(delivery, "smoke", "--stack", "local", "--environment", "prod",
                  "--url", f"https://{domain}:{stack.https_port}",
                  "--resolve", f"{domain}:{stack.https_port}:127.0.0.1",
                  "--cafile", str(stack.root / "nginx/tls" / domain / "fullchain.pem"),
                  "--release", release, "--attempts", "1")


def log(delivery) -> list[str]:
    return subprocess.run(["git", "log", "--format=%s"], cwd=delivery[1], check=True,
                          capture_output=True, text=True).stdout.splitlines()


def test_the_smoke_test_passes_through_nginx_for_the_serving_release(delivery):
    result = smoke(delivery, "release-a")
    assert result.returncode == 0, result.stdout
    assert "ok   path /: / 200 from release release-a" in result.stdout
    assert "ok   websocket /ws/echo/: /ws/echo/ upgraded and echoed" in result.stdout


def ops(delivery, *args: str) -> subprocess.CompletedProcess:
    _, repo, stand_in = delivery
    return subprocess.run(["bash", str(ROOT / "scripts/ops.sh"), *args], cwd=repo,
                          env={**os.environ, **stand_in.environment()}, capture_output=True,
                          stdin=subprocess.DEVNULL, text=True, timeout=180)


def test_make_logs_and_status_reach_the_stack(delivery):
    stack = delivery[0]
    logs = ops(delivery, "logs", "local", "app-prod")
    assert logs.returncode == 0, logs.stderr
    assert f"docker logs --tail 100 {stack.prefix}-app-prod-release-a-" in logs.stderr
    status = ops(delivery, "status", "local")
    assert status.returncode == 0, status.stderr
    services = {service["name"] for service in json.loads(status.stdout)["services"]}
    assert {"nginx", "postgres", "app-prod"} <= services, services
    ssh = ops(delivery, "ssh", "local")
    assert ssh.returncode == 1 and "there is no host to ssh to" in ssh.stderr


def test_make_exec_runs_a_command_like_the_serving_release(delivery):
    stack = delivery[0]
    # manage.py reaches prod's database through PgBouncer with the release's variables and
    # secret files, on its network, as its user.
    migrations = ops(delivery, "exec", "local", "prod", "python3", "manage.py",
                     "showmigrations", "notes")
    assert migrations.returncode == 0, migrations.stderr
    assert "[X] 0001_initial" in migrations.stdout
    assert f"made like {stack.prefix}-app-prod-release-a-" in migrations.stderr
    user = ops(delivery, "exec", "local", "prod", "id", "-u")
    assert user.stdout.strip() == "10001", user.stderr
    names = [c["Names"][0] for c in stack.engine.request("GET", "/containers/json?all=1")]
    assert not [name for name in names if name.startswith(f"/{stack.prefix}-exec-")], \
        "each command's container is removed when it ends"


def test_make_restart_restarts_the_serving_release_and_waits_until_it_is_healthy(delivery):
    stack = delivery[0]
    (serving,) = [name for name in stack.run.containers()
                  if name.startswith(f"{stack.prefix}-app-staging-")]
    started = stack.engine.container(serving)["State"]["StartedAt"]
    result = ops(delivery, "restart", "local", "app-staging")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{serving} is healthy\n"
    assert stack.engine.container(serving)["State"]["StartedAt"] != started
    assert stack.get("staging", "/healthz/").status == 200


def test_the_smoke_test_fails_for_a_release_that_is_not_serving(delivery):
    result = smoke(delivery, "release-b")
    assert result.returncode == 1
    assert ("FAIL health: /healthz/ was served by release 'release-a' (X-Release), expected "
            "'release-b'") in result.stdout


def test_a_release_is_a_commit_and_a_pulumi_up(delivery):
    stack, _, stand_in = delivery
    result = script(delivery, "release", "set", "--stack", "local", "--environment", "prod",
                    "--release", "release-b", "--up")
    assert result.returncode == 0, result.stderr
    assert stand_in.calls[-1] == ["up", "-s", "local", "--yes", "--non-interactive"]
    assert log(delivery)[0].startswith("Release release-b to prod (stack local)")
    assert stack.get("prod", "/").headers["x-release"] == "release-b"
    assert smoke(delivery, "release-b").returncode == 0


def test_a_release_whose_smoke_test_fails_is_rolled_back_to_the_previous(delivery):
    stack = delivery[0]
    # Healthy (its health check and the watch's probes pass, so `pulumi up` succeeds) but
    # every other path answers 500: only the smoke test's front-page check sees it.
    released = script(delivery, "release", "set", "--stack", "local", "--environment",
                      "prod", "--release", "broken", "--up")
    assert released.returncode == 0, released.stderr
    assert stack.get("prod", "/healthz/").headers["x-release"] == "broken"
    failed = smoke(delivery, "broken")
    assert failed.returncode == 1
    assert "FAIL path /: / answered 500" in failed.stdout
    # What the rollback job attaches to the run, before it rolls back.
    diagnostics = delivery[1] / "diagnostics"
    subprocess.run(["bash", str(ROOT / "scripts/diagnostics.sh"), "local", "prod",
                    str(diagnostics)], cwd=delivery[1], check=True, timeout=120)
    records = [json.loads(line) for line in (diagnostics / "releases.jsonl").read_text()
               .splitlines()]
    assert records[-1]["release"] == "broken" and records[-1]["outcome"] == "succeeded"
    broken = next(line.split("\t")[0] for line in
                  (diagnostics / "containers.txt").read_text().splitlines()
                  if line.startswith(f"{stack.prefix}-app-prod-broken-"))
    assert (diagnostics / f"logs-{broken}.txt").stat().st_size > 0
    assert "release broken:" in (diagnostics / "upstream.conf").read_text()
    rolled_back = script(delivery, "rollback", "--stack", "local", "--environment", "prod")
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert log(delivery)[0] == "Roll back prod to release-b: revert the release of broken"
    shown = script(delivery, "release", "show", "--stack", "local", "--environment", "prod")
    assert shown.stdout.strip() == "release-b"
    assert stack.get("prod", "/").headers["x-release"] == "release-b"
    assert smoke(delivery, "release-b").returncode == 0
    # The broken release's container is gone once the rollback's update succeeded.
    names = [c["Names"][0] for c in stack.engine.request("GET", "/containers/json?all=1")]
    assert not [name for name in names if name.startswith(f"/{stack.prefix}-app-prod-broken-")]


def test_a_failed_update_exits_non_zero_and_leaves_the_release_serving(delivery):
    stack = delivery[0]
    result = script(delivery, "release", "set", "--stack", "local", "--environment", "prod",
                    "--release", "bad-migration", "--up")
    assert result.returncode == 1
    assert "pulumi up -s local failed; roll back with" in result.stderr
    assert stack.get("prod", "/").headers["x-release"] == "release-b"
    rolled_back = script(delivery, "rollback", "--stack", "local", "--environment", "prod")
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert stack.get("prod", "/").headers["x-release"] == "release-b"


def test_make_releases_shows_what_ran_and_what_serves(delivery):
    result = ops(delivery, "releases", "local", "prod")
    assert result.returncode == 0, result.stderr
    rows = [line.split()[2:4] for line in result.stdout.splitlines()[1:]]
    assert ["bad-migration", "failed_migration"] in rows
    assert ["broken", "succeeded"] in rows  # its health passed; the smoke test rolled it back
    serving = [line for line in result.stdout.splitlines() if "(serving)" in line]
    assert len(serving) == 1 and " release-b " in serving[0], result.stdout

"""The local stack's own commands (scripts/local.sh: make local, destroy-local), run against
a stand-in `pulumi` that records each call and the backend it was given (test scaffolding:
the CLI cannot run here). Shown: the state stays in the project (PULUMI_BACKEND_URL), the
user's `pulumi login` is never touched, the host root is the checkout's .local-host/ and not
/tmp, and destroy-local keeps the protected volumes unless asked, saying so either way."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.make import stand_in
from tests.harness.settings import parse

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project's local stack file and scripts/local.sh, and a stand-in pulumi
    that logs `<PULUMI_BACKEND_URL>|<arguments>` and knows no stack and no config value."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts/local.sh", project / "scripts")
    shutil.copy(ROOT / "Pulumi.local.yaml", project)
    stand_in(project / ".pulumi-cli/bin/pulumi",
             "#!/bin/sh\n# test stand-in for the Pulumi CLI\n"
             f"echo \"$PULUMI_BACKEND_URL|$*\" >> {project / 'calls'}\n"
             'case "$1 $2" in "stack select"|"config get") exit 1;; esac\n')
    return project


def local_sh(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(project / "scripts/local.sh"), *args], cwd=project,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "PULUMI_BACKEND_URL": "https://api.pulumi.com"})


def calls(project: Path) -> list[tuple[str, str]]:
    lines = (project / "calls").read_text().splitlines()
    return [tuple(line.split("|", 1)) for line in lines]  # type: ignore[misc]


def test_make_local_keeps_the_state_in_the_project_and_never_logs_in(project):
    result = local_sh(project, "up")
    assert result.returncode == 0, result.stderr
    made = calls(project)
    # Every call, on the project's file backend, though the caller's pointed at Pulumi Cloud.
    assert {backend for backend, _ in made} == {f"file://{project}/.pulumi-local"}
    commands = [command for _, command in made]
    assert not [c for c in commands if c.startswith("login") or c.startswith("logout")]
    assert "stack init local --secrets-provider passphrase" in commands
    assert commands[-1] == "up -s local --yes"
    secrets = [c.split()[5] for c in commands if c.startswith("config set -s local --secret")]
    assert secrets == [f"aiia:{key}" for key in (
        "postgres_password", "dashboard_password", "prod_db_password", "staging_db_password",
        "prod_redis_password", "staging_redis_password", "prod_secret_key",
        "staging_secret_key")]
    assert "dashboard: https://status.localhost:8443/" in result.stdout
    assert "bash scripts/local.sh password" in result.stdout


def test_the_local_root_is_in_the_checkout_not_under_tmp():
    # The tests' stacks pin roots of their own (tests/harness/local_stack.py,
    # tests/rendered/conftest.py).
    assert parse("local").host.root_dir == str(ROOT / ".local-host")
    assert "/.local-host/" in (ROOT / ".gitignore").read_text().splitlines()
    # A local stack file without one gets the same; a VPS keeps /srv/aiia.
    assert parse("local", lambda raw: raw["host"].pop("root_dir")).host.root_dir == \
        str(ROOT / ".local-host")
    assert parse("prod").host.root_dir == "/srv/aiia"


def test_destroy_local_keeps_the_protected_volumes_and_says_how_to_remove_them(project):
    result = local_sh(project, "destroy")
    assert result.returncode == 0, result.stderr
    assert [command for _, command in calls(project)] == [
        "destroy -s local --yes --exclude-protected"]
    assert "kept the protected volumes aiia-local-postgres-data (the databases) and " \
        "aiia-local-letsencrypt (certificates); `make destroy-local VOLUMES=1` removes " \
        "them too" in result.stdout
    assert f"the host files stay in {project}/.local-host" in result.stdout


def test_destroy_local_with_volumes_unprotects_them_first(project):
    result = local_sh(project, "destroy", "--volumes")
    assert result.returncode == 0, result.stderr
    assert [command for _, command in calls(project)] == [
        "state unprotect -s local --all --yes", "destroy -s local --yes"]
    assert "with its databases (aiia-local-postgres-data)" in result.stdout


@pytest.mark.parametrize("args", [[], ["destroy", "--all"], ["login"]])
def test_local_sh_says_how_it_is_used(project, args):
    result = local_sh(project, *args)
    assert result.returncode == 2
    assert "usage: bash scripts/local.sh up | prepare | destroy [--volumes]" in result.stderr

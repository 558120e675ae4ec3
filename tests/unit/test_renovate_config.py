"""renovate.json's patterns, checked without Renovate (tests/rendered/test_renovate.py runs
Renovate itself): what its version rules let through, that every pattern is one RE2 can
compile (Renovate uses RE2 where its native module is built; RE2 has no look-around and no
back-references), and that the Pulumi CLI the workflows install is read, and kept, at the
SDK's version."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.settings.platform import ImageSettings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / "renovate.json").read_text())
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*(v\S+)\s*$",
                  re.MULTILINE)
RE2_LACKS = re.compile(r"\(\?=|\(\?!|\(\?<=|\(\?<!|\\[1-9]")
APP_BASE_IMAGE = re.search(r"^ARG BASE_IMAGE=(\S+)$", (ROOT / "app/Dockerfile").read_text(),
                           re.MULTILINE)[1]


def rule(package: str) -> dict:
    return next(r for r in CONFIG["packageRules"] if r.get("matchPackageNames") == [package])


def python_pattern(pattern: str) -> re.Pattern[str]:
    """A Renovate pattern ('/…/' for allowedVersions, 'regex:…' for versioning, or a plain
    matchString) as Python's re; named groups are spelled (?P<…>) there."""
    pattern = pattern.removeprefix("regex:")
    if pattern.startswith("/") and pattern.endswith("/"):
        pattern = pattern[1:-1]
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", pattern))


def all_patterns() -> list[str]:
    patterns = [p for m in CONFIG["customManagers"] for p in m["matchStrings"]]
    patterns += [r[key] for r in CONFIG["packageRules"] for key in ("allowedVersions",
                                                                     "versioning") if key in r]
    return patterns


@pytest.mark.parametrize("pattern", all_patterns())
def test_every_pattern_is_one_re2_compiles(pattern):
    assert not RE2_LACKS.search(pattern), pattern
    python_pattern(pattern)


@pytest.mark.parametrize(("package", "tag", "allowed"), [
    ("valkey/valkey", ImageSettings().redis.split(":")[1], True),
    ("valkey/valkey", "8.1.12-trixie", True),
    ("valkey/valkey", "8.1.12", False),  # the Debian variant's default tag, base unnamed
    ("valkey/valkey", "8.1.12-alpine", False),
    ("valkey/valkey", "9.0.8-trixie", False),
    ("redis", "7.2.12-bookworm", True),  # a stack that keeps Redis 7.2
    ("redis", "7.2.13-bookworm", True),
    ("redis", "7.4.0-bookworm", False),
    ("redis", "8.2.1-bookworm", False),
    ("python", APP_BASE_IMAGE.split(":")[1], True),
    ("python", "3.13.14-slim-trixie", True),
    ("python", "3.14-slim-trixie", False),
    ("python", "3.13-slim-bookworm", False),
    ("nginx", ImageSettings().nginx.split(":")[1], True),
    ("nginx", "1.30.7", True),
    ("nginx", "1.32.0", True),
    ("nginx", "1.31.2", False),
])
def test_allowed_versions(package, tag, allowed):
    assert bool(python_pattern(rule(package)["allowedVersions"]).fullmatch(tag)) is allowed


@pytest.mark.parametrize(("package", "current"), [
    ("edoburu/pgbouncer", ImageSettings().pgbouncer), ("certbot/certbot", ImageSettings().certbot),
])
def test_the_versioning_of_v_prefixed_tags_reads_the_current_pin(package, current):
    match = python_pattern(rule(package)["versioning"]).fullmatch(current.split(":")[1])
    assert match and match["major"] and match["minor"] and match["patch"], current


def test_a_postgres_major_release_is_never_proposed():
    postgres = next(r for r in CONFIG["packageRules"] if r.get("matchPackageNames") == ["postgres"])
    assert postgres == {**postgres, "matchUpdateTypes": ["major"], "enabled": False}


def workflow_actions(text: str) -> set[tuple[str, str, str]]:
    """(action, version of its comment, commit) of each `uses:` pin of a workflow."""
    return {(action, version, commit) for action, commit, version in USES.findall(text)}


def pinned_requirements(path: Path) -> dict[str, str]:
    """{package: version} of a requirements file's `name==version` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", line)
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def test_renovate_keeps_python_requirements_and_actions_current():
    assert {"github-actions", "pip_requirements"} <= set(CONFIG["enabledManagers"])
    assert "helpers:pinGitHubActionDigestsToSemver" in CONFIG["extends"]


def test_the_pulumi_cli_of_the_workflows_is_the_sdks_and_moves_with_it():
    """pulumi/actions installs the CLI named by pulumi-version, which must be the SDK's in
    requirements.txt; Renovate reads it as the GitHub release of pulumi/pulumi (its
    github-actions manager knows that input), and one rule groups it with the SDK."""
    sdk = pinned_requirements(ROOT / "requirements.txt")["pulumi"]
    cli = [version for path in sorted((ROOT / ".github/workflows").glob("*.yml"))
           for version in re.findall(r"pulumi-version: (\S+)", path.read_text())]
    assert cli and set(cli) == {sdk}
    group = next(r for r in CONFIG["packageRules"] if r.get("matchDepNames") == ["pulumi"])
    assert group["groupName"] and set(group) == {"description", "matchDepNames", "groupName"}


MATCHERS = {"matchManagers": "manager", "matchDepTypes": "depType", "matchDepNames": "depName",
            "matchPackageNames": "packageName", "matchDatasources": "datasource"}


def applied_rules(dep: dict) -> dict:
    """What packageRules make of a dependency, as Renovate applies them: a rule applies when
    every matcher it has matches (exact names only here), and a later rule's options
    override an earlier one's."""
    options: dict = {}
    for rule in CONFIG["packageRules"]:
        if all(dep.get(field) in rule[key] for key, field in MATCHERS.items() if key in rule):
            options.update({k: v for k, v in rule.items()
                            if k not in MATCHERS and k != "description"})
    return options


def test_one_pull_request_moves_the_sdk_and_the_cli_and_another_the_actions():
    """The dependencies as the extraction reports them (tests/rendered/test_renovate.py)."""
    sdk = {"manager": "pip_requirements", "depName": "pulumi", "packageName": "pulumi",
           "datasource": "pypi"}
    cli = {"manager": "github-actions", "depType": "uses-with", "depName": "pulumi",
           "packageName": "pulumi/pulumi", "datasource": "github-releases"}
    action = {"manager": "github-actions", "depType": "action", "depName": "actions/checkout",
              "packageName": "actions/checkout", "datasource": "github-tags"}
    python = {"manager": "github-actions", "depType": "uses-with", "depName": "python",
              "packageName": "actions/python-versions", "datasource": "github-releases"}
    assert applied_rules(sdk)["groupName"] == applied_rules(cli)["groupName"]
    assert applied_rules(action)["groupName"] not in (None, applied_rules(cli)["groupName"])
    assert applied_rules(python)["enabled"] is False
    assert "enabled" not in applied_rules(cli) and "enabled" not in applied_rules(action)


def test_the_pin_readers_read_this_repositorys_pins():
    """The rendered test compares Renovate's extraction with these two readers."""
    assert ("actions/checkout", "v7.0.1", "3d3c42e5aac5ba805825da76410c181273ba90b1") in \
        workflow_actions((ROOT / ".github/workflows/tests.yml").read_text())
    assert pinned_requirements(ROOT / "scripts/requirements.txt") == {"pyyaml": "6.0.4"}
    assert pinned_requirements(ROOT / "requirements-dev.txt")["ruff"] == "0.17.6"

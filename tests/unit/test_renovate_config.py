"""renovate.json's patterns, checked without Renovate (tests/rendered/test_renovate.py runs
Renovate itself): what its version rules let through, and that every pattern is one RE2 can
compile (Renovate uses RE2 where its native module is built; RE2 has no look-around and no
back-references)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.settings.platform import ImageSettings

CONFIG = json.loads((Path(__file__).resolve().parents[2] / "renovate.json").read_text())
RE2_LACKS = re.compile(r"\(\?=|\(\?!|\(\?<=|\(\?<!|\\[1-9]")


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
    ("redis", ImageSettings().redis.split(":")[1], True),
    ("redis", "7.2.13-bookworm", True),
    ("redis", "7.4.0-bookworm", False),
    ("redis", "8.2.1-bookworm", False),
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

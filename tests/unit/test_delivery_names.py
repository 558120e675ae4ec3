"""The delivery scripts (scripts/) check names and releases with the settings' own rules
(components/settings/platform.py ENVIRONMENT_NAME_RE, releases.py is_release), not copies
of them: what preview would refuse never reaches a commit, and nothing the settings accept
is refused. The scripts still run with the standard library and PyYAML alone."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.settings import ConfigError, parse_settings
from scripts.stack_file import DeliveryError, stack_path, with_release
from tests.harness.program import made_up_secrets, stack_config

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["prod", "qa", "eu2", "a" * 16, "pr-od", "a" * 17, "Prod", "1prod", "prod_eu", "pr od"]
RELEASES = ["2026.11.26-1", "v1.2.3", "latest", "_x", "a" * 128, "sha256:" + "a" * 64, "",
            "-leading-dash", ".dot", "has space", "a" * 129, "v1:2", "sha256:abc", "x;rm -rf /",
            "sha256:" + "A" * 64]


def settings_problems(change) -> list[str]:
    config = copy.deepcopy(stack_config("prod"))
    raw = {key.split(":", 1)[1]: value for key, value in config.items()}
    change(raw)
    secrets = {key.split(":", 1)[1]: value for key, value in made_up_secrets(config).items()}
    try:
        parse_settings("prod", raw, secrets.get)
    except ConfigError as error:
        return error.problems
    return []


def settings_refuse_environment(name: str) -> bool:
    def add(raw):
        raw["platform"]["environments"][name] = {"domain": "extra.example.com", "port": 8100}

    return any(f"environment name {name!r} must be" in p for p in settings_problems(add))


def settings_refuse_release(release: str) -> bool:
    def set_release(raw):
        raw["releases"]["prod"]["release"] = release

    return any("releases.prod.release=" in p for p in settings_problems(set_release))


@pytest.mark.parametrize("name", ["pr-od", "a" * 17])
def test_a_stack_name_settings_refuse_as_an_environment_is_refused(name, tmp_path):
    (tmp_path / f"Pulumi.{name}.yaml").write_text((ROOT / "Pulumi.prod.yaml").read_text())
    assert settings_refuse_environment(name)
    with pytest.raises(DeliveryError, match="is not a stack name"):
        stack_path(name, tmp_path)


def test_release_refuses_a_hyphenated_stack_settings_would_refuse(tmp_path):
    text = (ROOT / "Pulumi.prod.yaml").read_text().replace("    prod:\n", "    pr-od:\n")
    (tmp_path / "Pulumi.pr-od.yaml").write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "scripts.release", "show", "--stack", "pr-od"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout
    assert "'pr-od' is not a stack name" in result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_the_scripts_and_the_settings_take_the_same_environment_names(name, tmp_path):
    (tmp_path / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    try:
        stack_path(name, tmp_path)
        script_refuses = False
    except DeliveryError:
        script_refuses = True
    assert script_refuses == settings_refuse_environment(name)


@pytest.mark.parametrize("release", RELEASES)
def test_the_scripts_and_the_settings_take_the_same_releases(release):
    try:
        with_release((ROOT / "Pulumi.prod.yaml").read_text(), "prod", release)
        script_refuses = False
    except DeliveryError as error:
        assert "is not an image tag" in str(error)
        script_refuses = True
    assert script_refuses == settings_refuse_release(release)


# Refuses to import anything outside the standard library but PyYAML and this repository.
STDLIB_ONLY = """
import runpy, sys
class ThirdParty:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        # dashboard: the settings check platform.alerts by the notifier's own rules
        # (dashboard/notify_config.py); what it imports beyond them is still refused here.
        if top not in sys.stdlib_module_names and top not in (
                "yaml", "components", "scripts", "dashboard"):
            raise ImportError(f"{name} is not the standard library")
sys.meta_path.insert(0, ThirdParty())
for module in ("scripts.stack_file", "scripts.release", "scripts.rollback", "scripts.smoke",
               "scripts.touched", "scripts.notify"):
    __import__(module)
try:
    import pulumi
except ImportError:
    pass
else:
    raise SystemExit("the blocker let pulumi in")
sys.argv = ["release", "--help"]
runpy.run_module("scripts.release", run_name="__main__")
"""


def test_the_scripts_run_with_the_standard_library_and_pyyaml_alone():
    result = subprocess.run([sys.executable, "-c", STDLIB_ONLY], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage: release" in result.stdout

"""The stand-in for the Pulumi CLI's stack and config commands (tests/harness/
pulumi_stacks_standin.py) behaves as its docstring says the CLI does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.make import stand_in
from tests.harness.pulumi_stacks_standin import calls, plaintext, stacks, wrapper

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def cli(tmp_path):
    state, bin_dir = tmp_path / "state", tmp_path / "bin"
    state.mkdir()
    stand_in(bin_dir / "pulumi", wrapper(state, ROOT))
    (tmp_path / "Pulumi.prod.yaml").write_text("# a comment\nconfig:\n  aiia:prefix: aiia\n")

    def pulumi(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["pulumi", *args], cwd=tmp_path, input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    return pulumi, state, tmp_path


def test_stacks_are_created_once_and_selected_when_they_exist(cli):
    pulumi, state, _ = cli
    assert pulumi("stack", "select", "acme/aiia/prod").returncode == 255
    assert pulumi("stack", "init", "acme/aiia/prod", "--non-interactive").returncode == 0
    again = pulumi("stack", "init", "acme/aiia/prod")
    assert again.returncode == 255 and "already exists" in again.stderr
    assert pulumi("stack", "select", "acme/aiia/prod").returncode == 0
    assert stacks(state) == ["acme/aiia/prod"]


def test_a_secret_comes_from_stdin_without_its_last_newline_into_the_stack_file(cli):
    pulumi, state, directory = cli
    pulumi("stack", "init", "acme/aiia/prod")
    result = pulumi("config", "set", "-s", "acme/aiia/prod", "--secret", "aiia:key",
                    "--non-interactive", stdin="line one\nline two\n")
    assert result.returncode == 0, result.stderr
    text = (directory / "Pulumi.prod.yaml").read_text()
    assert text.startswith("# a comment\nconfig:\n  aiia:prefix: aiia\n  aiia:key:\n")
    assert plaintext(text.split("secure: ")[1].strip()) == "line one\nline two"
    assert calls(state)[-1] == ["config", "set", "-s", "acme/aiia/prod", "--secret",
                                "aiia:key", "--non-interactive"]
    # Set once: the stand-in refuses to replace it (make init never does).
    assert pulumi("config", "set", "-s", "acme/aiia/prod", "--secret", "aiia:key",
                  stdin="x").returncode == 2


def test_stdin_that_is_no_terminal_is_read_even_when_empty_and_other_commands_fail(cli):
    pulumi, _, directory = cli
    pulumi("stack", "init", "acme/aiia/prod")
    # /dev/null is no terminal: its nothing is the value, as the CLI's io.ReadAll gives.
    assert pulumi("config", "set", "-s", "acme/aiia/prod", "--secret",
                  "aiia:key").returncode == 0
    text = (directory / "Pulumi.prod.yaml").read_text()
    assert plaintext(text.split("secure: ")[1].strip()) == ""
    other = pulumi("up", "-s", "prod")
    assert other.returncode == 2 and "does not model `pulumi up -s prod`" in other.stderr

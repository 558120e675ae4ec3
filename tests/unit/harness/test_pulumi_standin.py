"""The test stand-in for the Pulumi CLI (tests/harness/pulumi_standin.py): what it accepts,
what it refuses, and that a failed update is a failed `pulumi up` (exit 1)."""

import os
import subprocess

import pytest

from tests.harness.pulumi_standin import PulumiStandIn, parse_up
from tests.harness.replay import ReplayError


def test_parse_up():
    assert parse_up(["up", "-s", "local", "--yes", "--non-interactive"]) == "local"
    for argv, message in ((["preview", "-s", "local"], "models `up` and `config get` only"),
                          (["up", "--yes"], "needs -s STACK"),
                          (["up", "-s", "local"], "without --yes")):
        with pytest.raises(ValueError, match=message):
            parse_up(argv)


def test_the_stand_in_on_path_runs_up_with_the_stack_files_config(tmp_path):
    (tmp_path / "Pulumi.local.yaml").write_text("config:\n  aiia:releases:\n"
                                                "    prod: {release: r2}\n")
    seen = []

    def up(stack, config):
        seen.append((stack, config))
        if config["aiia:releases"]["prod"]["release"] == "bad":
            raise ReplayError("app-prod-migrate-bad: exit 1")

    with PulumiStandIn(tmp_path, up, {"aiia:dashboard_password": "s3cret"}) as stand_in:
        env = {**os.environ, **stand_in.environment()}

        def pulumi(*args):
            return subprocess.run(["pulumi", *args], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=60)

        ok = pulumi("up", "-s", "local", "--yes")
        assert ok.returncode == 0, ok.stderr
        assert seen == [("local", {"aiia:releases": {"prod": {"release": "r2"}}})]
        (tmp_path / "Pulumi.local.yaml").write_text(
            "config:\n  aiia:releases:\n    prod: {release: bad}\n")
        failed = pulumi("up", "-s", "local", "--yes")
        assert failed.returncode == 1 and "app-prod-migrate-bad" in failed.stderr
        missing = pulumi("up", "-s", "prod", "--yes")
        assert missing.returncode == 255 and "no stack named 'prod'" in missing.stderr
        refused = pulumi("destroy", "-s", "local")
        assert refused.returncode == 2 and "models `up` and `config get` only" in refused.stderr
        secret = pulumi("config", "get", "-s", "local", "aiia:dashboard_password")
        assert secret.returncode == 0 and secret.stdout == "s3cret\n"
        unknown = pulumi("config", "get", "-s", "local", "aiia:nothing")
        assert unknown.returncode == 1 and "'aiia:nothing' not found" in unknown.stderr
        assert len(stand_in.calls) == 6

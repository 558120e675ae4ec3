"""scripts/maintenance.py: maintenance on and off as commits of the stack file (issue #27
item 4), in a scratch git repository holding a copy of the stack files."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for command in (["init", "-q"], ["add", "."],
                    ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm",
                     "stacks"]):
        subprocess.run(["git", *command], cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def maintenance(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.maintenance", *args], cwd=repo, capture_output=True,
        text=True, timeout=60, check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "t",
             "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@example.com"})


def config(repo: Path, stack: str) -> dict:
    return yaml.safe_load((repo / f"Pulumi.{stack}.yaml").read_text())["config"]


def test_on_then_off_each_one_commit_of_the_one_value(repo):
    before = (repo / "Pulumi.staging.yaml").read_text()
    result = maintenance(repo, "on", "--stack", "staging", "--reason", "moving the database")
    assert result.returncode == 0, result.stderr
    assert config(repo, "staging")["aiia:releases"]["staging"]["maintenance"] is True
    log = subprocess.run(["git", "log", "-1", "--format=%B"], cwd=repo, text=True,
                         capture_output=True).stdout
    assert log.startswith("Maintenance on for staging (stack staging)")
    assert "moving the database" in log
    # Every other line of the file as it was.
    after = (repo / "Pulumi.staging.yaml").read_text()
    assert set(before.splitlines()) <= set(after.splitlines())
    again = maintenance(repo, "on", "--stack", "staging")
    assert again.returncode == 2 and "releases.staging.maintenance is on already" in again.stderr
    assert maintenance(repo, "off", "--stack", "staging").returncode == 0
    assert config(repo, "staging")["aiia:releases"]["staging"]["maintenance"] is False


def test_a_dirty_stack_file_or_an_unknown_environment_is_refused(repo):
    unknown = maintenance(repo, "on", "--stack", "prod", "--environment", "qa")
    assert unknown.returncode == 2 and "qa" in unknown.stderr
    (repo / "Pulumi.prod.yaml").write_text((repo / "Pulumi.prod.yaml").read_text() + "# x\n")
    dirty = maintenance(repo, "on", "--stack", "prod")
    assert dirty.returncode == 2 and "uncommitted changes" in dirty.stderr

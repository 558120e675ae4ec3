"""scripts/pg_upgrade.py without a server: what it refuses before touching anything, how the
switch commits the stack file (and reverts it when `pulumi up` fails), and the comparison
that stops an upgrade whose copy lost a row or changed a role. The server side runs for real
in tests/e2e/test_pg_upgrade.py."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts import pg_upgrade
from scripts.pg_cluster import UpgradeError
from scripts.pg_upgrade import Report, differences, plan_of
from scripts.stack_file import DeliveryError, with_value

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A scratch repository of the stack files; prod as a stack made on 15 before the
    data major was recorded (its shipped images.postgres pinned back to 15)."""
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml", "Pulumi.local.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    prod = tmp_path / "Pulumi.prod.yaml"
    text = with_value(prod.read_text(), "platform.images.postgres", "postgres:15.20-bookworm")
    prod.write_text(text.replace("      data_major: 17\n", "      max_connections: 50\n"))
    for variable in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(variable, "t")
    for variable in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(variable, "t@example.com")
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "stacks"]):
        subprocess.run(["git", *command], cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def postgres_config(repo: Path) -> tuple[str, object]:
    platform = yaml.safe_load((repo / "Pulumi.prod.yaml").read_text())["config"]["aiia:platform"]
    return platform["images"]["postgres"], platform["postgres"].get("data_major")


def commits(repo: Path) -> list[str]:
    return subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.splitlines()


def test_a_15_stack_is_planned_to_17_on_its_host(repo):
    plan, docker_host = plan_of("prod", "postgres:17.12-trixie")
    assert (plan.prefix, plan.major, plan.serving, plan.volume) == (
        "aiia", 17, "aiia-postgres", "aiia-postgres-data")
    assert docker_host == "ssh://deploy@vps.eduaiia.com"
    local, docker_host = plan_of("local", "postgres:18.1-trixie")
    assert (local.prefix, docker_host) == ("aiia-local", None)


@pytest.mark.parametrize(("stack", "image", "message"), [
    ("staging", "postgres:17.12-trixie", "does not own the platform"),
    ("prod", "postgres:17", "is not pinned to an exact release"),
    ("prod", "postgres@sha256:" + "a" * 64, "names no major"),
    ("qa", "postgres:17.12-trixie", "does not exist"),
])
def test_what_is_refused_before_anything_is_touched(repo, stack, image, message):
    with pytest.raises(DeliveryError, match=message):
        plan_of(stack, image)


def test_a_stack_file_with_changes_of_its_own_is_refused(repo):
    (repo / "Pulumi.prod.yaml").write_text((repo / "Pulumi.prod.yaml").read_text() + "# x\n")
    with pytest.raises(DeliveryError, match="uncommitted changes"):
        plan_of("prod", "postgres:17.12-trixie")


def test_the_switch_commits_the_image_and_the_major_then_ups(repo, monkeypatch):
    ups = []
    monkeypatch.setattr(pg_upgrade, "pulumi_up", lambda stack: ups.append(stack) or 0)
    pg_upgrade._switch("prod", "postgres:17.12-trixie", 17)()
    assert postgres_config(repo) == ("postgres:17.12-trixie", 17)
    assert commits(repo)[0] == "PostgreSQL 17 for stack prod: postgres:17.12-trixie"
    assert ups == ["prod"]


def test_a_stack_file_that_names_the_new_major_already_is_upped_without_a_commit(repo,
                                                                                monkeypatch):
    """A local stack made on 15 whose Pulumi.local.yaml came with 17 (the shipped file): the
    up refused it on the host; after the copy, the up alone switches."""
    ups = []
    monkeypatch.setattr(pg_upgrade, "pulumi_up", lambda stack: ups.append(stack) or 0)
    head = commits(repo)
    pg_upgrade._switch("local", "postgres:17.12-trixie", 17)()
    assert (commits(repo), ups) == (head, ["local"])


def test_a_failed_up_at_the_switch_is_reverted_and_the_old_server_brought_back(repo,
                                                                               monkeypatch):
    results = iter([1, 0])
    monkeypatch.setattr(pg_upgrade, "pulumi_up", lambda stack: next(results))
    with pytest.raises(UpgradeError, match="failed with postgres:17.12-trixie; reverted"):
        pg_upgrade._switch("prod", "postgres:17.12-trixie", 17)()
    assert postgres_config(repo) == ("postgres:15.20-bookworm", None)
    assert commits(repo)[0].startswith('Revert "PostgreSQL 17 for stack prod')
    assert next(results, "both ups ran") == "both ups ran"


def test_a_lost_row_or_a_changed_password_is_a_difference():
    assert differences("rows of", {"db/public.t": 3}, {"db/public.t": 3}) == []
    assert differences("rows of", {"db/public.t": 3, "db/public.u": 1}, {"db/public.t": 2}) == [
        "rows of db/public.t: 3 before, 2 after", "rows of db/public.u: 1 before, None after"]
    before = [("aiia_prod", "SCRAM-SHA-256$4096:a"), ("postgres", "SCRAM-SHA-256$4096:b")]
    after = [("aiia_prod", "SCRAM-SHA-256$4096:c"), ("postgres", "SCRAM-SHA-256$4096:b")]
    found = differences("role", before, after)
    assert found == ["role only before: aiia_prod", "role only after: aiia_prod"]
    assert "SCRAM" not in " ".join(found), "a verifier is never printed"


def test_the_report_states_the_rows_and_the_downtime():
    report = Report(old_major=15, new_major=17, rows={"a/public.t": 10, "b/public.t": 5},
                    roles=4, copy_seconds=3.24, downtime_seconds=9.81)
    assert report.lines()[0] == "PostgreSQL 15 → 17: 15 rows in 2 tables and 4 roles kept"
    assert report.lines()[1].startswith("writes refused for 9.8 s (the copy 3.2 s")

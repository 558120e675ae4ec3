"""The delivery scripts (scripts/): releases as commits, rollback by revert, Slack payloads
sent to a local HTTP server standing in for Slack's webhook (and nothing sent, without
failing, when Slack is not set up), the CI credentials' scripts (ci-ssh.sh: the deploy key
into an agent and the host key the stack file pins; push-commit.sh: a token that reaches git
for one push only), and their refusals of bad input. Git runs for real in scratch
repositories; where a script calls the Pulumi CLI a stand-in `pulumi` that only records its
arguments is put on PATH (test scaffolding: the e2e test tests/e2e/test_delivery.py drives
the replay with one)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from scripts.notify import payload
from scripts.stack_file import (
    DeliveryError,
    config_of,
    known_hosts_line,
    release_of,
    with_release,
)
from scripts.touched import touched_stacks

ROOT = Path(__file__).resolve().parents[2]
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
                "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


def run_script(module: str, *args: str, cwd: Path, env: dict | None = None):
    environment = {**os.environ, **GIT_IDENTITY, "PYTHONPATH": str(ROOT), **(env or {})}
    environment.pop("GITHUB_OUTPUT", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", f"scripts.{module}", *args], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=60)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_IDENTITY}).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository holding this project's stack files as committed."""
    repo = tmp_path / "infra"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for stack in ("prod", "staging", "local"):
        shutil.copy(ROOT / f"Pulumi.{stack}.yaml", repo)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "stack files")
    return repo


@pytest.fixture
def pulumi_recorder(tmp_path) -> tuple[Path, Path]:
    """A stand-in `pulumi` (test scaffolding) that records its arguments and exits with
    the code in the file next to it (0 unless a test writes another)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "pulumi-calls"
    (tmp_path / "pulumi-exit").write_text("0")
    stand_in = bin_dir / "pulumi"
    stand_in.write_text(f"#!/bin/sh\n# test stand-in for the Pulumi CLI\n"
                        f"echo \"$*\" >> {calls}\nexit $(cat {tmp_path / 'pulumi-exit'})\n")
    stand_in.chmod(0o755)
    return bin_dir, calls


def path_with(bin_dir: Path) -> dict:
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


# The stack file

def test_setting_a_release_changes_that_line_only_and_keeps_the_comments():
    for stack, environment in (("prod", "prod"), ("staging", "staging"), ("local", "staging")):
        text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
        changed = with_release(text, environment, "2026.12.03-7")
        assert release_of(changed, environment) == "2026.12.03-7"
        before, after = text.splitlines(), changed.splitlines()
        assert len(before) == len(after)
        differing = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(differing) == 1, differing
        assert differing[0][1].strip() == "release: 2026.12.03-7"
        config_before = yaml.safe_load(text)["config"]
        config_after = yaml.safe_load(changed)["config"]
        config_after["aiia:releases"][environment]["release"] = \
            config_before["aiia:releases"][environment]["release"]
        assert config_before == config_after


def test_local_releases_each_environment_apart():
    text = (ROOT / "Pulumi.local.yaml").read_text()
    changed = with_release(text, "prod", "local-2")
    assert release_of(changed, "prod") == "local-2"
    assert release_of(changed, "staging") == "local-1"


def test_a_digest_is_a_release():
    digest = "sha256:" + "a" * 64
    assert release_of(with_release((ROOT / "Pulumi.prod.yaml").read_text(), "prod", digest),
                      "prod") == digest


@pytest.mark.parametrize("release", ["", "bad tag", "-leading-dash", "a" * 129, "x;rm -rf /",
                                     "sha256:short"])
def test_a_bad_release_is_refused(release):
    with pytest.raises(DeliveryError, match="is not an image tag"):
        with_release((ROOT / "Pulumi.prod.yaml").read_text(), "prod", release)


def test_an_environment_the_stack_does_not_release_is_refused():
    with pytest.raises(DeliveryError, match=r"no releases.prod \(it has: staging\)"):
        with_release((ROOT / "Pulumi.staging.yaml").read_text(), "prod", "x1")


# release.py

def test_release_commits_the_stack_file_with_a_message_that_says_what(repo):
    result = run_script("release", "set", "--stack", "prod", "--release", "2026.12.03-1",
                        cwd=repo)
    assert result.returncode == 0, result.stderr
    assert release_of((repo / "Pulumi.prod.yaml").read_text(), "prod") == "2026.12.03-1"
    assert git(repo, "status", "--porcelain") == ""
    subject = git(repo, "log", "-1", "--format=%s")
    assert subject == "Release 2026.12.03-1 to prod (stack prod), after 2026.11.26-1\n"
    assert git(repo, "show", "--format=", "--name-only", "HEAD") == "Pulumi.prod.yaml\n"
    changed = run_script("release", "changed", "--stack", "prod", "--since", "HEAD~1", cwd=repo)
    assert changed.stdout == "true\n"
    unchanged = run_script("release", "changed", "--stack", "staging", "--since", "HEAD~1",
                           cwd=repo)
    assert unchanged.stdout == "false\n"


def test_release_with_up_runs_pulumi_up_of_the_stack(repo, pulumi_recorder):
    bin_dir, calls = pulumi_recorder
    result = run_script("release", "set", "--stack", "staging", "--release", "s-2", "--up",
                        cwd=repo, env=path_with(bin_dir))
    assert result.returncode == 0, result.stderr
    assert calls.read_text() == "up -s staging --yes --non-interactive\n"


def test_release_refuses_a_dirty_stack_file_the_same_release_and_a_bad_stack(repo):
    (repo / "Pulumi.prod.yaml").write_text((repo / "Pulumi.prod.yaml").read_text() + "# x\n")
    dirty = run_script("release", "set", "--stack", "prod", "--release", "r2", cwd=repo)
    assert dirty.returncode == 2 and "uncommitted changes" in dirty.stderr
    git(repo, "checkout", "Pulumi.prod.yaml")
    same = run_script("release", "set", "--stack", "prod", "--release", "2026.11.26-1", cwd=repo)
    assert same.returncode == 2 and "already" in same.stderr
    missing = run_script("release", "show", "--stack", "qa", cwd=repo)
    assert missing.returncode == 2 and "Pulumi.qa.yaml does not exist" in missing.stderr
    assert len(git(repo, "log", "--format=%H").split()) == 1


# rollback.py

def test_rollback_reverts_the_release_commit_and_runs_up(repo, pulumi_recorder, tmp_path):
    bin_dir, calls = pulumi_recorder
    for release in ("r1", "r2"):
        assert run_script("release", "set", "--stack", "prod", "--release", release,
                          cwd=repo).returncode == 0
    release_commit = git(repo, "rev-parse", "HEAD").strip()
    output = tmp_path / "github-output"
    result = run_script("rollback", "--stack", "prod", cwd=repo,
                        env={**path_with(bin_dir), "GITHUB_OUTPUT": str(output)})
    assert result.returncode == 0, result.stderr
    assert release_of((repo / "Pulumi.prod.yaml").read_text(), "prod") == "r1"
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("Roll back prod to r1: revert the release of r2")
    assert f"This reverts commit {release_commit}." in message
    assert git(repo, "diff", "HEAD~2", "HEAD") == ""  # exactly the state before r2
    assert calls.read_text() == "up -s prod --yes --non-interactive\n"
    assert "failed_release=r2\nrestored_release=r1\n" in output.read_text()


def test_rollback_of_a_commit_that_changed_more_puts_back_only_the_release(repo,
                                                                           pulumi_recorder):
    bin_dir, _ = pulumi_recorder
    path = repo / "Pulumi.prod.yaml"
    text = with_release(path.read_text(), "prod", "r2").replace("swap_mb: 1024",
                                                                "swap_mb: 2048")
    path.write_text(text)
    git(repo, "commit", "-q", "-am", "r2 and more swap")
    result = run_script("rollback", "--stack", "prod", cwd=repo, env=path_with(bin_dir))
    assert result.returncode == 0, result.stderr
    assert release_of(path.read_text(), "prod") == "2026.11.26-1"
    assert "swap_mb: 2048" in path.read_text()
    assert "its other changes stay" in git(repo, "log", "-1", "--format=%B")


def test_a_rollback_whose_up_fails_says_so(repo, pulumi_recorder, tmp_path):
    bin_dir, _ = pulumi_recorder
    (tmp_path / "pulumi-exit").write_text("1")
    assert run_script("release", "set", "--stack", "prod", "--release", "r2",
                      cwd=repo).returncode == 0
    result = run_script("rollback", "--stack", "prod", cwd=repo, env=path_with(bin_dir))
    assert result.returncode == 1
    assert "of the rollback to 2026.11.26-1 failed" in result.stderr


def test_nothing_to_roll_back_is_refused(repo):
    result = run_script("rollback", "--stack", "prod", "--no-up", cwd=repo)
    assert result.returncode == 2
    assert "first release of prod: there is no previous release" in result.stderr


# notify.py, against a local HTTP server standing in for Slack's webhook

class SlackStandIn(BaseHTTPRequestHandler):
    received: list[dict] = []
    answer = (200, b"ok")

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        type(self).received.append({"content_type": self.headers["Content-Type"],
                                    "body": json.loads(self.rfile.read(length))})
        status, body = type(self).answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def slack():
    SlackStandIn.received = []
    SlackStandIn.answer = (200, b"ok")
    server = HTTPServer(("127.0.0.1", 0), SlackStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/services/T0/B0/x", SlackStandIn
    server.shutdown()
    server.server_close()


RUN_URL = "https://github.com/eduaiia/aiia-infra/actions/runs/42"


def notify(status: str, webhook: str | None, *extra: str):
    env = {"SLACK_WEBHOOK_URL": webhook} if webhook is not None else {"SLACK_WEBHOOK_URL": ""}
    return run_script("notify", "--status", status, "--stack", "prod", "--release", "r2",
                      "--actor", "alice", "--run-url", RUN_URL, *extra, cwd=ROOT, env=env)


@pytest.mark.parametrize(("status", "headline"), [
    ("success", ":white_check_mark: prod: release r2 is live"),
    ("failure", ":x: prod: release r2 failed"),
    ("rollback", ":rewind: prod: release r2 failed and was rolled back"),
])
def test_notify_posts_slacks_payload_for_each_outcome(slack, status, headline):
    url, server = slack
    result = notify(status, url, "--detail", "deploy: failure")
    assert result.returncode == 0, result.stderr
    assert len(server.received) == 1
    request = server.received[0]
    assert request["content_type"] == "application/json"
    body = request["body"]
    assert body == payload(status, "prod", "r2", "alice", RUN_URL, "deploy: failure")
    assert body["text"] == f"{headline} (by alice): {RUN_URL}"
    assert body["blocks"][0] == {"type": "section",
                                 "text": {"type": "mrkdwn", "text": headline}}
    fields = [field["text"] for field in body["blocks"][1]["fields"]]
    assert fields == ["*Stack*\nprod", "*Release*\nr2", "*By*\nalice", f"*Run*\n<{RUN_URL}|42>"]
    assert body["blocks"][2]["elements"][0]["text"] == "deploy: failure"


def test_notify_fails_when_slack_refuses(slack):
    url, server = slack
    server.answer = (400, b"invalid_payload")
    result = notify("success", url)
    assert result.returncode == 1
    assert "Slack answered 400: invalid_payload" in result.stderr


def test_notify_without_a_webhook_sends_nothing_and_does_not_fail(slack):
    """Slack is optional: a run is as green or red as its deployment."""
    for unset in (None, "", "  "):
        result = notify("failure", unset)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Slack is not set up (no SLACK_WEBHOOK_URL), nothing "
                                        "sent: :x: prod: release r2 failed")
    assert slack[1].received == []


def test_notify_refuses_a_plain_http_webhook_and_a_bad_status(slack):
    plain = notify("success", "http://hooks.slack.example/services/x")
    assert plain.returncode == 2 and "must be an https:// URL" in plain.stderr
    unknown = notify("celebration", "https://hooks.slack.example/x")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    assert slack[1].received == []


# touched.py and smoke.py's inputs

def test_touched_stacks():
    assert touched_stacks(["Pulumi.prod.yaml"]) == ["prod"]
    assert touched_stacks(["Pulumi.staging.yaml", "docs/runbooks.md"]) == ["staging"]
    assert touched_stacks(["components/platform/nginx.py"]) == ["prod", "staging"]
    assert touched_stacks(["templates/nginx/site.conf.j2", "Pulumi.prod.yaml"]) == \
        ["prod", "staging"]
    assert touched_stacks(["README.md", "tests/unit/platform/test_nginx.py",
                           "Pulumi.local.yaml"]) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--url", "http://api.eduaiia.com", "--release", "r1"], "must be https://"),
    (["--url", "https://api.eduaiia.com", "--release", "bad tag"], "not an image tag"),
    (["--url", "https://a.localhost:8443", "--release", "r1", "--resolve", "b.localhost:8443:"
      "127.0.0.1"], "does not name a.localhost:8443"),
    (["--url", "https://a.localhost", "--release", "r1", "--resolve", "nonsense"],
     "must be HOST:PORT:ADDRESS"),
])
def test_smoke_refuses_bad_input(args, message):
    result = run_script("smoke", *args, cwd=ROOT)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_smoke_fails_when_nothing_answers():
    result = run_script("smoke", "--url", "https://nothing.localhost:9", "--release", "r1",
                        "--resolve", "nothing.localhost:9:127.0.0.1", "--attempts", "1",
                        cwd=ROOT)
    assert result.returncode == 1
    # Only what the contract asks: no front page, no WebSocket unless configured.
    assert "FAIL health" in result.stdout and "websocket" not in result.stdout


# The CI credentials' scripts

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHqk1hd2S2Jc5gVQ8m0bq7cJx3kq2b6QmM1r9tB0nYxZ"


def with_host_key(text: str, host_key: str, port: int = 22) -> str:
    config = yaml.safe_load(text)
    ssh = config["config"]["aiia:host"]["ssh"]
    ssh.update(host_key=host_key, port=port)
    return yaml.safe_dump(config, sort_keys=False)


@pytest.mark.parametrize(("host_key", "port", "line"), [
    (HOST_KEY, 22, f"vps.eduaiia.com {HOST_KEY}"),
    (f"vps.eduaiia.com {HOST_KEY}", 22, f"vps.eduaiia.com {HOST_KEY}"),  # ssh-keyscan's line
    (f"{HOST_KEY} root@vps", 2222, f"[vps.eduaiia.com]:2222 {HOST_KEY}"),
])
def test_the_known_hosts_line_is_the_stack_files_pin(host_key, port, line):
    text = with_host_key((ROOT / "Pulumi.prod.yaml").read_text(), host_key, port)
    assert known_hosts_line(config_of(text)) == line


@pytest.mark.parametrize("host_key", ["", "ssh-ed25519", "AAAA ssh-ed25519 not/base64!",
                                      "ssh-dss AAAAB3NzaC1kc3M="])
def test_a_missing_or_broken_host_key_pin_is_refused(host_key):
    text = with_host_key((ROOT / "Pulumi.prod.yaml").read_text(), host_key)
    with pytest.raises(DeliveryError, match="host_key"):
        known_hosts_line(config_of(text))


def test_ci_ssh_loads_the_key_into_an_agent_and_pins_only_the_stack_files_host_key(repo,
                                                                                   tmp_path):
    stack_file = repo / "Pulumi.prod.yaml"
    stack_file.write_text(with_host_key(stack_file.read_text(), HOST_KEY))
    key = tmp_path / "ci-prod"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aiia-ci-prod", "-f",
                    str(key)], check=True, timeout=30)
    home, github_env = tmp_path / "home", tmp_path / "github-env"
    home.mkdir()
    runner_temp = Path(tempfile.mkdtemp(prefix="ci-ssh-"))  # a unix socket path is short
    env = {**os.environ, "HOME": str(home), "GITHUB_ENV": str(github_env),
           "RUNNER_TEMP": str(runner_temp), "STACK": "prod", "PYTHONPATH": str(ROOT),
           "DEPLOY_SSH_KEY": key.read_text()}
    socket = runner_temp / "ssh-agent.sock"
    try:
        result = subprocess.run(["bash", str(ROOT / "scripts/ci-ssh.sh")], cwd=repo, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert (home / ".ssh/known_hosts").read_text() == f"vps.eduaiia.com {HOST_KEY}\n"
        assert (home / ".ssh/known_hosts").stat().st_mode & 0o777 == 0o600
        assert github_env.read_text() == f"SSH_AUTH_SOCK={socket}\n"
        listed = subprocess.run(["ssh-add", "-l"], env={**env, "SSH_AUTH_SOCK": str(socket)},
                                capture_output=True, text=True, timeout=30)
        assert "aiia-ci-prod" in listed.stdout, listed.stdout + listed.stderr
        assert key.read_text() not in result.stdout + result.stderr
    finally:
        # The agent this test started, found by its own socket path.
        agents = subprocess.run(["pgrep", "-f", f"ssh-agent -a {socket}"],
                                capture_output=True, text=True).stdout.split()
        for pid in agents:
            os.kill(int(pid), signal.SIGTERM)
        shutil.rmtree(runner_temp, ignore_errors=True)


def test_ci_ssh_without_the_key_says_where_it_lives(repo, tmp_path):
    env = {**os.environ, "GITHUB_ENV": str(tmp_path / "github-env"), "STACK": "prod",
           "DEPLOY_SSH_KEY": ""}
    result = subprocess.run(["bash", str(ROOT / "scripts/ci-ssh.sh")], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DEPLOY_SSH_KEY is not given to this step: it lives in the GitHub environment of " \
        "the stack" in result.stderr


@pytest.fixture
def pushed(repo, tmp_path) -> tuple[Path, Path, Path]:
    """(clone with a new commit, its bare origin, a log of each git's argv and config
    environment): git behind a stand-in that records them (test scaffolding)."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(origin))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    (clone / "Pulumi.prod.yaml").write_text(with_release(
        (clone / "Pulumi.prod.yaml").read_text(), "prod", "r9"))
    git(clone, "commit", "-q", "-am", "r9")
    bin_dir, log = tmp_path / "bin", tmp_path / "git-log"
    bin_dir.mkdir()
    real_git = shutil.which("git")
    (bin_dir / "git").write_text(
        f"#!/bin/sh\n# test stand-in: records, then runs the real git\n"
        f"printf 'argv: %s\\n' \"$*\" >> {log}\n"
        f"printf 'config: %s\\n' \"${{GIT_CONFIG_VALUE_0:-}}\" >> {log}\n"
        f"exec {real_git} \"$@\"\n")
    (bin_dir / "git").chmod(0o755)
    return clone, origin, bin_dir


def test_push_commit_hands_the_token_to_one_git_push_only(pushed, tmp_path):
    clone, origin, bin_dir = pushed
    token = "ghs_thisIsTheAppToken"
    env = {**os.environ, **GIT_IDENTITY, "PUSH_TOKEN": token,
           "PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_SERVER_URL": "https://github.com"}
    env.pop("GITHUB_ACTIONS", None)
    result = subprocess.run(["bash", str(ROOT / "scripts/push-commit.sh"), "release/x"],
                            cwd=clone, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert git(origin, "rev-parse", "release/x") == git(clone, "rev-parse", "HEAD")
    log = (tmp_path / "git-log").read_text()
    header = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert f"config: AUTHORIZATION: basic {header}" in log
    argv = [line for line in log.splitlines() if line.startswith("argv: ")]
    assert argv[-1] == "argv: push origin HEAD:refs/heads/release/x"
    assert token not in "\n".join(argv) and header not in "\n".join(argv)
    assert token not in (clone / ".git/config").read_text()
    assert header not in (clone / ".git/config").read_text()


def test_push_commit_without_a_token_pushes_nothing_and_says_how(pushed):
    clone, origin, _ = pushed
    env = {**os.environ, "PUSH_TOKEN": ""}
    result = subprocess.run(["bash", str(ROOT / "scripts/push-commit.sh"), "main"], cwd=clone,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "the rollback App is not set up" in result.stderr
    assert "python3 -m scripts.rollback" in result.stderr
    assert git(origin, "rev-parse", "main") != git(clone, "rev-parse", "HEAD")

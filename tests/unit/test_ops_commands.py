"""The everyday commands of scripts/ops.sh (make exec, restart, releases, logs) against a
stand-in `docker` (tests/harness/fake_docker.py) and, for the VPS stack, a stand-in `ssh`
that runs the remote command here: what each sends to Docker and to the host, for a local
stack and a VPS one. tests/e2e/test_delivery.py runs them on a real local stack."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.app_exec import run_arguments
from tests.harness.fake_docker import calls, install, rule, runs
from tests.harness.make import stand_in

ROOT = Path(__file__).resolve().parents[2]
SERVING = "aiia-app-prod-2026-11-26-1-0a1b2c3d"
IMAGE_ID = "sha256:" + "ab" * 32


def serving_container(secret_as_variable: str | None = None) -> dict:
    """`docker inspect`'s view of a release container, as app_release.py declares one."""
    env = ["ENVIRONMENT=prod", "RELEASE=2026.11.26-1", "PORT=8000",
           "SECRET_KEY_FILE=/run/secrets/aiia/secret_key", "DATABASE_HOST=aiia-pgbouncer",
           "PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"]
    if secret_as_variable:
        env.append(f"DATABASE_PASSWORD={secret_as_variable}")
    return {
        "Name": f"/{SERVING}", "Image": IMAGE_ID,
        "Config": {"User": "10001:10001", "Env": env,
                   "Labels": {"aiia.service": "app", "aiia.environment": "prod",
                              "aiia.stack": "aiia", "aiia.release": "2026.11.26-1"}},
        "HostConfig": {"NetworkMode": "aiia", "ReadonlyRootfs": True,
                       "Tmpfs": {"/tmp": "size=8m,mode=1777"}, "CapDrop": ["ALL"],
                       "CapAdd": None, "SecurityOpt": ["no-new-privileges:true"],
                       "Memory": 80 * 1024 * 1024, "MemorySwap": 80 * 1024 * 1024,
                       "LogConfig": {"Type": "json-file",
                                     "Config": {"max-file": "3", "max-size": "10m"}}},
        "Mounts": [
            {"Type": "bind", "Source": "/srv/aiia/logs/prod",
             "Destination": "/var/log/aiia/prod", "RW": True},
            {"Type": "bind", "Source": "/srv/aiia/media/prod", "Destination": "/app/media",
             "RW": True},
            {"Type": "bind", "Source": "/srv/aiia/secrets/prod",
             "Destination": "/run/secrets/aiia", "RW": False},
        ],
    }


def test_exec_runs_a_container_made_like_the_serving_one():
    arguments = run_arguments(serving_container(), "aiia-exec-prod-x", "/private/env",
                              ["python3", "manage.py", "createsuperuser"], tty=True)
    assert arguments == [
        "run", "--rm", "-i", "-t", "--name", "aiia-exec-prod-x", "--env-file", "/private/env",
        "--network", "aiia", "--no-healthcheck", "--user", "10001:10001",
        "--mount", "type=bind,source=/srv/aiia/logs/prod,target=/var/log/aiia/prod",
        "--mount", "type=bind,source=/srv/aiia/media/prod,target=/app/media",
        "--mount", "type=bind,source=/srv/aiia/secrets/prod,target=/run/secrets/aiia,readonly",
        "--read-only", "--tmpfs", "/tmp:size=8m,mode=1777", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges:true",
        "--memory", str(80 * 1024 * 1024), "--memory-swap", str(80 * 1024 * 1024),
        "--log-driver", "json-file", "--log-opt", "max-file=3", "--log-opt", "max-size=10m",
        "--label", "aiia.service=app-exec", "--label", "aiia.environment=prod",
        "--label", "aiia.stack=aiia", "--label", "aiia.release=2026.11.26-1",
        IMAGE_ID, "python3", "manage.py", "createsuperuser"]


# scripts/ops.sh in a project of its own

@pytest.fixture
def project(tmp_path) -> Path:
    """The local and prod stack files with their host roots in this test's directory, each
    with prod serving SERVING and a release history; docker and ssh stand-ins on PATH."""
    project = tmp_path / "project"
    project.mkdir()
    for stack in ("local", "prod"):
        document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
        root = tmp_path / f"root-{stack}"
        document["config"]["aiia:host"]["root_dir"] = str(root)
        (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
        (root / "nginx/upstreams").mkdir(parents=True)
        (root / "nginx/upstreams/prod.conf").write_text(
            f"# The live upstream of environment \"prod\", rewritten by a release's switch.\n"
            f"# release 2026.11.26-1: {SERVING}\nupstream app_prod {{\n}}\n")
        (root / "state").mkdir()
        (root / "state/releases.jsonl").write_text("".join(json.dumps(record) + "\n" for record in [
            {"id": "prod-1", "environment": "prod", "release": "2026.11.25-3",
             "started_at": "2026-11-25T10:00:00Z", "outcome": "in_progress"},
            {"id": "prod-1", "environment": "prod", "release": "2026.11.25-3",
             "started_at": "2026-11-25T10:00:00Z", "outcome": "succeeded"},
            {"id": "staging-1", "environment": "staging", "release": "s-1",
             "started_at": "2026-11-25T11:00:00Z", "outcome": "succeeded"},
            {"id": "prod-2", "environment": "prod", "release": "2026.11.26-1",
             "previous_release": "2026.11.25-3", "started_at": "2026-11-26T15:04:05Z",
             "outcome": "succeeded"},
            {"id": "prod-3", "environment": "prod", "release": "2026.11.27-1",
             "previous_release": "2026.11.26-1", "started_at": "2026-11-27T09:00:00Z",
             "outcome": "failed_health_check", "reason": "unhealthy after 60 s"},
        ]))
    bin_dir = tmp_path / "bin"
    install(bin_dir, [
        rule(["inspect", "--type", "container", SERVING], json.dumps([serving_container()])),
        rule(["inspect", "--format"], "healthy\n"),
        rule(["ps", "-a", "-q", "--filter", "name=^aiia-local-nginx$"], "f00d\n"),
        rule(["ps", "-a", "-q", "--filter", "name=^aiia-local-dashboard$"], "beef\n"),
        rule(["ps", "-a", "-q", "--filter", "name=^aiia-local-dashboard-collector$"], "cafe\n"),
        rule(["ps", "-a", "-q"], ""),
        rule(["ps", "--filter", "name=^aiia-local-app-prod-"],
             f"2026-11-26 15:04:10 +0000 UTC\t{SERVING}\n"
             "2026-11-27 09:00:03 +0000 UTC\taiia-local-app-prod-2026-11-27-1-99999999\n"),
    ])
    stand_in(bin_dir / "ssh",
             "#!/bin/bash\n# test stand-in for ssh: logs its arguments; runs a `cat` of the\n"
             "# host's files here (they are in this test's directory), nothing else\n"
             f"echo \"$*\" >> {tmp_path / 'ssh-calls'}\n"
             'for last; do :; done\nif [[ "$last" == "cat "* ]]; then exec bash -c "$last"; fi\n')
    return project


def ops(project: Path, *args: str) -> subprocess.CompletedProcess:
    bin_dir = project.parent / "bin"
    return subprocess.run(["bash", str(ROOT / "scripts/ops.sh"), *args], cwd=project,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})


def ssh_calls(project: Path) -> list[str]:
    path = project.parent / "ssh-calls"
    return path.read_text().splitlines() if path.exists() else []


def test_exec_on_a_local_stack_runs_the_command_like_the_serving_release(project):
    result = ops(project, "exec", "local", "prod", "python3", "manage.py", "shell", "-c",
                 "print('hi there')")
    assert result.returncode == 0, result.stderr
    (run,) = [run for run in runs(project.parent / "bin") if run["args"][0] == "run"]
    assert run["args"][-6:] == [IMAGE_ID, "python3", "manage.py", "shell", "-c",
                                "print('hi there')"]
    assert run["env_file"].splitlines() == serving_container()["Config"]["Env"]
    assert run["docker_host"] is None
    assert f"made like {SERVING} (release 2026.11.26-1, user 10001:10001, network aiia)" \
        in result.stderr
    assert ssh_calls(project) == []


def test_exec_keeps_secret_variables_off_the_command_line(project):
    bin_dir = project.parent / "bin"
    scenario = json.loads((bin_dir / "docker-scenario.json").read_text())
    scenario[0]["stdout"] = json.dumps([serving_container(secret_as_variable="s3cr3t-value")])
    (bin_dir / "docker-scenario.json").write_text(json.dumps(scenario))
    assert ops(project, "exec", "local", "prod", "true").returncode == 0
    (run,) = [run for run in runs(bin_dir) if run["args"][0] == "run"]
    assert "DATABASE_PASSWORD=s3cr3t-value" in run["env_file"].splitlines()
    assert not [argument for argument in run["args"] if "s3cr3t-value" in argument]


def test_exec_on_a_vps_reads_the_upstream_over_ssh_and_runs_through_its_docker_host(project):
    result = ops(project, "exec", "prod", "prod", "python3", "manage.py", "migrate", "--check")
    assert result.returncode == 0, result.stderr
    (read,) = ssh_calls(project)
    assert read.startswith("-p 22 deploy@vps.eduaiia.com cat ")
    assert read.endswith("/root-prod/nginx/upstreams/prod.conf ")
    docker_hosts = {run["docker_host"] for run in runs(project.parent / "bin")}
    assert docker_hosts == {"ssh://deploy@vps.eduaiia.com"}


def test_exec_of_an_environment_that_serves_nothing_says_so(project):
    result = ops(project, "exec", "local", "qa", "true")
    assert result.returncode == 1
    assert "no serving release of qa in stack local" in result.stderr
    assert calls(project.parent / "bin") == []


@pytest.mark.parametrize("service", ["x;touch /tmp/pwned", "../etc", "Nginx", "-rf"])
def test_a_service_or_environment_that_is_no_name_is_refused(project, service):
    for args in (["logs", "local", service], ["restart", "local", service],
                 ["exec", "local", service, "true"], ["releases", "local", service]):
        result = ops(project, *args)
        assert result.returncode == 2 and "is not a name" in result.stderr, args
    assert calls(project.parent / "bin") == []


def test_restart_of_an_environment_restarts_its_serving_release_and_waits_for_health(project):
    result = ops(project, "restart", "local", "app-prod")
    assert result.returncode == 0, result.stderr
    assert ["restart", SERVING] in calls(project.parent / "bin")
    assert "prod answers 502 until" in result.stderr
    assert result.stdout == f"{SERVING} is healthy\n"


def test_restart_of_a_platform_service_restarts_its_container(project):
    result = ops(project, "restart", "local", "nginx")
    assert result.returncode == 0, result.stderr
    assert ["restart", "aiia-local-nginx"] in calls(project.parent / "bin")
    unknown = ops(project, "restart", "local", "mysql")
    assert unknown.returncode == 1
    assert "no container aiia-local-mysql in stack local: a service is one of postgres" \
        in unknown.stderr


def test_restart_of_a_vps_dashboard_restarts_its_systemd_unit(project):
    result = ops(project, "restart", "prod", "dashboard")
    assert result.returncode == 0, result.stderr
    assert ssh_calls(project) == [
        "-p 22 deploy@vps.eduaiia.com sudo -n systemctl restart aiia-dashboard.service "]


def test_releases_shows_each_attempt_once_and_marks_what_serves(project):
    result = ops(project, "releases", "local")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["STARTED", "ENV", "RELEASE", "OUTCOME", "PREVIOUS", "REASON"]
    assert [line.split()[1:4] for line in lines[1:]] == [
        ["prod", "2026.11.25-3", "succeeded"], ["staging", "s-1", "succeeded"],
        ["prod", "2026.11.26-1", "succeeded"], ["prod", "2026.11.27-1", "failed_health_check"]]
    assert "succeeded (serving)" in lines[3] and "(serving)" not in lines[1]
    assert "succeeded (serving)" in lines[2]  # staging's
    assert lines[4].endswith("2026.11.26-1  unhealthy after 60 s")
    only_prod = ops(project, "releases", "prod", "prod")
    assert only_prod.returncode == 0, only_prod.stderr
    assert "staging" not in only_prod.stdout and len(only_prod.stdout.splitlines()) == 4
    assert ssh_calls(project)[0].startswith("-p 22 deploy@vps.eduaiia.com cat ")


def test_releases_without_a_history_says_so(project):
    (project.parent / "root-local/state/releases.jsonl").unlink()
    result = ops(project, "releases", "local")
    assert result.returncode == 1
    assert "no release recorded in stack local yet" in result.stderr


def test_logs_follow_the_newest_app_container_since_a_time(project):
    result = ops(project, "logs", "local", "app-prod", "--follow", "--since", "10m")
    assert result.returncode == 0, result.stderr
    assert calls(project.parent / "bin")[-1] == [
        "logs", "--tail", "100", "--follow", "--since", "10m",
        "aiia-local-app-prod-2026-11-27-1-99999999"]


def test_logs_of_the_dashboard_are_its_container_locally_and_its_unit_on_a_vps(project):
    local = ops(project, "logs", "local", "dashboard")
    assert local.returncode == 0, local.stderr
    # Exactly the dashboard, not its collector (aiia-local-dashboard-collector).
    assert calls(project.parent / "bin")[-1] == ["logs", "--tail", "100",
                                                 "aiia-local-dashboard"]
    vps = ops(project, "logs", "prod", "dashboard", "--follow")
    assert vps.returncode == 0, vps.stderr
    assert ssh_calls(project) == ["-p 22 deploy@vps.eduaiia.com sudo -n journalctl --no-pager "
                                  "-u aiia-dashboard.service -n 100 --follow "]


def test_status_gives_curl_the_dashboard_password_on_stdin_never_on_its_command_line(project):
    """Review L8: another user of the operator's machine sees every process's argv (`ps`).
    The config curl reads (-K -) quotes the password as curl(1) says: \\\\ and \\" escaped."""
    bin_dir = project.parent / "bin"
    password = 'p"a\\ss w0rd$x'
    stand_in(bin_dir / "pulumi", "#!/bin/bash\n# test stand-in for `pulumi config get`\n"
             f"printf '%s\\n' {shlex.quote(password)}\n")
    stand_in(bin_dir / "curl", "#!/bin/bash\n# test stand-in for curl: logs argv and stdin\n"
             f"printf '%s\\n' \"$@\" > {project.parent / 'curl-argv'}\n"
             f"cat > {project.parent / 'curl-stdin'}\necho '{{}}'\n")
    result = ops(project, "status", "prod")
    assert result.returncode == 0, result.stderr
    argv = (project.parent / "curl-argv").read_text()
    assert "w0rd" not in argv and "-u" not in argv.split("\n"), argv
    assert argv.split("\n")[-3:-1] == [
        "-", "https://devstatus.eduaiia.com:443/api/status"], argv
    assert (project.parent / "curl-stdin").read_text() == \
        'user = "admin:p\\"a\\\\ss w0rd$x"\n'


def test_status_signs_in_as_the_named_operator_where_the_dashboard_has_operators(project):
    """Review L3: an account per operator, so that the audit lines name who asked; the
    shared account is gone, so a nameless `make status` says how to name yourself."""
    stack_file = project / "Pulumi.prod.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["aiia:platform"]["dashboard"] = {"operators": ["alice", "bob"]}
    stack_file.write_text(yaml.safe_dump(document))
    bin_dir = project.parent / "bin"
    stand_in(bin_dir / "pulumi", "#!/bin/bash\n# test stand-in for `pulumi config get`: logs "
             f"its argv\nprintf '%s\\n' \"$*\" >> {project.parent / 'pulumi-argv'}\n"
             "echo alice-password-long-enough\n")
    stand_in(bin_dir / "curl", "#!/bin/bash\n# test stand-in for curl: logs stdin\n"
             f"cat > {project.parent / 'curl-stdin'}\necho '{{}}'\n")
    nameless = ops(project, "status", "prod")
    assert nameless.returncode == 2
    assert "name yours, e.g. make status STACK=prod OPERATOR=alice" in nameless.stderr
    assert not (project.parent / "pulumi-argv").exists()
    named = subprocess.run(["bash", str(ROOT / "scripts/ops.sh"), "status", "prod"],
                           cwd=project, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "OPERATOR": "bob",
                                "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert named.returncode == 0, named.stderr
    assert (project.parent / "pulumi-argv").read_text() == \
        "config get -s prod aiia:dashboard_password_bob\n"
    assert (project.parent / "curl-stdin").read_text() == \
        'user = "bob:alice-password-long-enough"\n'


def test_alerts_test_runs_the_notifier_test_as_root_on_a_vps_and_in_the_collector_locally(
        project):
    vps = ops(project, "alerts-test", "prod")
    assert vps.returncode == 0, vps.stderr
    assert ssh_calls(project) == [
        "-p 22 deploy@vps.eduaiia.com sudo -n env PYTHONPATH=/opt/aiia python3 -m dashboard "
        f"notify-test --config {project.parent}/root-prod/dashboard/config.json "]
    local = ops(project, "alerts-test", "local")
    assert local.returncode == 0, local.stderr
    assert calls(project.parent / "bin")[-1] == [
        "exec", "aiia-local-dashboard-collector", "python3", "-m", "dashboard", "notify-test",
        "--config", f"{project.parent}/root-local/dashboard/config.json"]

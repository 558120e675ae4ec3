"""The collector against a stand-in Docker Engine, health endpoint and realistic files."""

from __future__ import annotations

import fcntl
import json
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dashboard import store
from dashboard.collector import CollectorBusy, collect_once
from dashboard.config import load_config
from dashboard.docker_api import DockerClient
from dashboard.timestamps import format_utc
from tests.harness import dashboard_status as fixtures
from tests.harness.dashboard_status import REPO_ROOT, access_log_line

MiB = 1024 * 1024


@pytest.fixture
def fresh_host(tmp_path):
    """A realistic host of its own, for tests that change it."""
    with fixtures.realistic_host(tmp_path) as host:
        yield host


def status_of(host) -> dict:
    return json.loads(load_config(host.state.config_path).status_path.read_text())


def service(status: dict, name: str) -> dict:
    return next(s for s in status["services"] if s["name"] == name)


def test_services_are_matched_by_label_and_environment(realistic_host):
    status = status_of(realistic_host)
    names = [s["name"] for s in status["services"]]
    assert names == [
        "postgres",
        "pgbouncer",
        "redis",
        "nginx",
        "certbot",
        "app-prod",
        "app-staging",
        "worker-prod",
    ]
    prod = service(status, "app-prod")
    assert prod["container"] == "aiia-app-prod-2026-11-25-1"
    assert prod["release"] == "2026.11.25-1"
    assert prod["state"] == "running" and prod["health"] == "healthy"
    # docker stats semantics: usage minus the reclaimable page cache.
    assert prod["memory_used_bytes"] == int(71.8 * MiB)
    assert prod["memory_limit_bytes"] == 96 * MiB
    assert prod["memory_percent"] == pytest.approx(74.8, abs=0.1)
    staging = service(status, "app-staging")
    assert staging["restarts"] == 2 and staging["environment"] == "staging"
    assert service(status, "certbot")["health"] is None
    # A release's process, under its own name, with its release and its own limit.
    worker = service(status, "worker-prod")
    assert worker["container"] == "aiia-worker-prod-2026-11-25-1-0a1b2c3d"
    assert worker["release"] == "2026.11.25-1" and worker["environment"] == "prod"
    assert worker["memory_limit_bytes"] == 64 * MiB and worker["configured"] is True


def test_probes_reach_each_environment_through_its_host_header_and_sni(realistic_host):
    status = status_of(realistic_host)
    assert ("prod.example.com", "prod.example.com") in realistic_host.health.seen
    assert ("staging.example.com", "staging.example.com") in realistic_host.health.seen
    for environment in status["environments"]:
        assert environment["probe"]["ok"] is True
        assert environment["probe"]["status_code"] == 200
        assert environment["uptime"]["30d"]["percent"] < 100  # the seeded outages count


def test_the_probe_asks_the_health_path_of_the_app_that_started_last(fresh_host):
    """releases.staging.health.path: /ht/?format=json, on the app's container as its label
    (components/release/health_route.py): staging's probe asks that path, prod's (no label)
    the config's; during a release the newer container's path wins, an exited one's never."""
    label = {"aiia.health.path": "/ht/?format=json"}
    now = time.time()
    staging_app = next(c for c in fresh_host.docker.containers
                       if c.service == "app" and c.environment == "staging")
    staging_app.extra_labels = {"aiia.health.path": "/old-health/"}
    fresh_host.docker.containers += [
        fixtures.FakeContainer("aiia-app-staging-2026-12-07-1", "app", "staging", 96, 10,
                               started_at=now - 5, extra_labels=label),
        fixtures.FakeContainer("aiia-app-prod-2026-12-07-9", "app", "prod", 96, 0,
                               state="exited", started_at=now, extra_labels=label),
    ]
    fresh_host.collect()
    assert ("staging.example.com", "/ht/?format=json") in fresh_host.health.paths
    assert ("prod.example.com", "/health/") in fresh_host.health.paths
    assert {path for host, path in fresh_host.health.paths
            if host == "staging.example.com"} == {"/ht/?format=json"}
    staging = next(e for e in status_of(fresh_host)["environments"] if e["name"] == "staging")
    assert staging["health_url"].endswith("/ht/?format=json") and staging["probe"]["ok"]


def test_log_tails_from_docker_and_from_files(realistic_host):
    logs_dir = load_config(realistic_host.state.config_path).logs_dir
    app = json.loads((logs_dir / "app-prod.json").read_text())
    assert app["error"] is None
    assert len(app["lines"]) == 120  # the stand-in container logged 120 lines
    assert any("ERROR django.request" in line for line in app["lines"])
    access = json.loads((logs_dir / "nginx-access.json").read_text())
    assert len(access["lines"]) == 200 and access["source"].startswith("file ")
    # The Docker API was asked for the newest running app container of prod only.
    assert any(
        "/containers/"
        + fixtures.FakeContainer("aiia-app-prod-2026-11-25-1", "", "", 0, 0).id
        + "/logs"
        in path
        for path in realistic_host.docker.requests
    )


def test_outputs_are_readable_by_the_server_group_only(realistic_host):
    config = load_config(realistic_host.state.config_path)
    for path in [config.status_path, *config.logs_dir.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    assert not list(config.state_dir.glob(".*.tmp"))  # atomic writes left nothing behind


def test_a_failing_health_endpoint_is_recorded_as_down(fresh_host):
    config = load_config(fresh_host.state.collector_config_path)
    fresh_host.health.statuses["staging.example.com"] = 503
    started = int(time.time())
    collect_once(config, now=started)
    status = collect_once(config, now=started + 60)  # the next minute, still failing
    staging = next(e for e in status["environments"] if e["name"] == "staging")
    assert staging["probe"]["ok"] is False
    assert staging["probe"]["status_code"] == 503
    assert "HTTP 503" in staging["probe"]["error"]
    assert staging["probe"]["failing_since"] == format_utc(started)
    assert staging["probe"]["at"] == format_utc(started + 60)


def test_docker_unreachable_is_reported_and_everything_else_still_collected(fresh_host):
    config = load_config(fresh_host.state.config_path)  # names a socket that does not exist
    status = collect_once(config)
    assert [e["step"] for e in status["collector"]["errors"]] == ["docker"]
    assert {s["state"] for s in status["services"]} == {"unknown"}
    assert status["environments"][0]["probe"]["ok"] is True
    assert len(status["certificates"]) == 3 and status["releases"]["total"] == 9
    app_log = json.loads((config.logs_dir / "app-prod.json").read_text())
    assert "Docker unreachable" in app_log["error"]


def test_a_missing_container_and_a_leftover_one(fresh_host):
    fresh_host.docker.containers = [c for c in fresh_host.docker.containers if c.service != "redis"]
    fresh_host.docker.containers.append(
        fixtures.FakeContainer(
            "aiia-app-prod-2026-11-20-2",
            "app-old",
            "prod",
            96,
            0,
            state="exited",
            exit_code=137,
            started_at=time.time() - 86400,
        )
    )
    fresh_host.collect()
    status = status_of(fresh_host)
    assert service(status, "redis")["state"] == "missing"
    leftover = service(status, "app-old")
    assert leftover["configured"] is False and leftover["exit_code"] == 137


def test_the_access_log_is_read_once_per_line_across_runs(fresh_host):
    config = load_config(fresh_host.state.collector_config_path)
    now = time.time()  # one instant for all three runs: the windows must not slide between them
    before = collect_once(config, now=now)["environments"][0]["errors"]["5m"]
    with open(config.access_log, "a") as log:
        log.write("".join(access_log_line(now - 1, "prod", 502) + "\n" for _ in range(10)))
    after = collect_once(config, now=now)["environments"][0]["errors"]["5m"]
    assert after["errors_5xx"] == before["errors_5xx"] + 10
    assert after["requests"] == before["requests"] + 10
    again = collect_once(config, now=now)["environments"][0]["errors"]["5m"]
    assert again == after


def test_host_cpu_is_averaged_between_two_runs(fresh_host):
    config = load_config(fresh_host.state.collector_config_path)
    collect_once(config)
    time.sleep(0.3)
    collect_once(config)
    with store.open_store(config.database_path) as db:
        sample = store.last_host_sample(db)
    assert sample.cpu_percent is not None and 0 <= sample.cpu_percent <= 100


def test_each_collection_enforces_retention(fresh_host):
    config = load_config(fresh_host.state.collector_config_path)
    docker = DockerClient(config.docker_socket)
    collect_once(config, now=time.time() + 10 * 86400, docker=docker)  # ten days later
    with store.open_store(config.database_path) as db:
        oldest = db.execute("SELECT MIN(ts) FROM probes").fetchone()[0]
        host_rows = store.row_counts(db)["host_samples"]
    assert oldest >= time.time() + 10 * 86400 - 35 * 86400 - 5
    assert host_rows == 1  # a day of samples, all older than 25 h by then, but the new one


def test_a_second_collection_waits_its_turn(fresh_host):
    config = load_config(fresh_host.state.collector_config_path)
    with open(config.state_dir / ".collect.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(CollectorBusy):
            collect_once(config)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "dashboard",
                "collect",
                "--config",
                str(fresh_host.state.collector_config_path),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0 and "skipping this run" in result.stderr


def test_collect_every_keeps_collecting_until_stopped(fresh_host):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dashboard",
            "collect",
            "--config",
            str(fresh_host.state.collector_config_path),
            "--every",
            "1",
        ],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while sum("collected in" in line for line in lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    reader.join(timeout=5)
    assert sum("collected in" in line for line in lines) >= 2, lines


def test_only_this_stacks_containers_are_listed(tmp_path):
    # One engine can hold two stacks (a test bed, a second platform): the collector asks
    # Docker for aiia.stack=<its stack> and sees only its own.
    containers = [
        fixtures.FakeContainer("a-postgres", "postgres", "platform", 120, 50, stack="a"),
        fixtures.FakeContainer("b-postgres", "postgres", "platform", 120, 50, stack="b"),
    ]
    with fixtures.FakeDockerEngine(tmp_path / "docker.sock", containers):
        client = DockerClient(tmp_path / "docker.sock")
        assert [c.name for c in client.labelled_containers(stack="a")] == ["a-postgres"]
        assert sorted(c.name for c in client.labelled_containers()) == ["a-postgres",
                                                                         "b-postgres"]


def test_a_resident_collector_follows_a_changed_config_and_survives_a_broken_one(fresh_host):
    """The local stack's collector runs --every N; `pulumi up` rewrites its config."""
    path = fresh_host.state.collector_config_path
    status_path = load_config(path).status_path
    collector = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "collect", "--config", str(path), "--every", "1"],
        cwd=fixtures.REPO_ROOT, stderr=subprocess.PIPE, text=True)

    def status_within(seconds: float, condition) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                status = json.loads(status_path.read_text())
            except (OSError, ValueError):
                status = None
            if status is not None and condition(status):
                return status
            time.sleep(0.2)
        raise AssertionError(f"no such collection within {seconds} s")

    try:
        status_within(30, lambda s: s.get("certificate_renewal", "absent") is None)
        raw = json.loads(path.read_text())
        raw["certbot_state_file"] = str(path.parent / "certbot.json")
        path.write_text(json.dumps(raw))
        status_within(30, lambda s: s["certificate_renewal"] is not None)
        path.write_text("{broken")
        status_path.unlink()
        status_within(30, lambda s: s["certificate_renewal"] is not None)  # the last good one
    finally:
        collector.terminate()
        _, stderr = collector.communicate(timeout=30)
    assert "collecting with the previous config" in stderr, stderr


def test_the_collector_reads_each_environments_maintenance_switch(tmp_path):
    from components.platform.nginx import render_maintenance
    from dashboard.collector import maintenance_on

    switches = tmp_path / "nginx" / "maintenance"
    switches.mkdir(parents=True)
    (switches / "prod.conf").write_text(render_maintenance("prod", True, ("203.0.113.7",)))
    (switches / "staging.conf").write_text(render_maintenance("staging", False))
    assert maintenance_on(tmp_path, "prod") is True
    assert maintenance_on(tmp_path, "staging") is False
    assert maintenance_on(tmp_path, "qa") is False  # no switch yet: served


def test_a_stats_read_before_the_engines_first_sample_is_asked_again(monkeypatch):
    """Seen in a loaded CI run: a one-shot stats read of a running container came back with
    empty memory_stats. The second read (without one-shot) waits for a sample."""
    client = DockerClient(Path("/nonexistent.sock"))
    asked = []

    def answer(path, params=None):
        asked.append(dict(params or {}))
        if params.get("one-shot"):
            return {"memory_stats": {}}
        return {"memory_stats": {"usage": 30 * 1024 * 1024, "stats": {"inactive_file": 0}}}

    monkeypatch.setattr(client, "_get_json", answer)
    assert client.memory_usage("abc") == 30 * 1024 * 1024
    assert asked == [{"stream": "false", "one-shot": "true"}, {"stream": "false"}]

"""The server for real: `python3 -m dashboard serve` on a free 127.0.0.1 port, live psutil,
the collector's files from a temporary state dir and SQLite. No root, no Docker socket."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import psutil
import pytest

from dashboard.config import load_config
from dashboard.server import SECURITY_HEADERS, PreflightError, preflight
from tests.harness import dashboard_status as fixtures
from tests.unit.dashboard.conftest import basic, request

NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))
OPTIONAL_TEXT = (str, type(None))
WINDOW = {"requests": int, "errors_5xx": int, "share_percent": OPTIONAL_NUMBER}
UPTIME = {
    "percent": OPTIONAL_NUMBER,
    "coverage_percent": NUMBER,
    "down_s": int,
    "gap_s": int,
    "since": str,
}
HISTORY = {"start": str, "step_s": int, "values": [OPTIONAL_NUMBER]}
RELEASE = {
    "id": str,
    "environment": str,
    "release": str,
    "image": str,
    "image_digest": str,
    "previous_release": str,
    "started_at": OPTIONAL_TEXT,
    "finished_at": OPTIONAL_TEXT,
    "duration_s": OPTIONAL_NUMBER,
    "outcome": str,
    "failed": bool,
    "reason": str,
}
JOBS = {
    "last": dict,
    "last_good": dict,
    "history": [dict],
    "total": int,
    "malformed_lines": int,
    "error": OPTIONAL_TEXT,
}
STATUS_SCHEMA = {
    "generated_at": str,
    "version": str,
    "poll_seconds": int,
    "collected_at": str,
    "collector_age_s": int,
    "snapshot_error": type(None),
    "overall": str,
    "collector": {"version": str, "duration_ms": NUMBER, "every_s": int, "errors": list},
    "host": {
        "hostname": str,
        "uptime_s": int,
        "load": [NUMBER],
        "cpu": {"percent": NUMBER, "count": int},
        "memory": {
            "total_bytes": int,
            "used_bytes": int,
            "available_bytes": int,
            "percent": NUMBER,
        },
        "swap": {"total_bytes": int, "used_bytes": int, "percent": NUMBER},
        "disk": {
            "path": str,
            "total_bytes": int,
            "used_bytes": int,
            "free_bytes": int,
            "percent": NUMBER,
        },
    },
    "host_history": {
        "start": str,
        "step_s": int,
        "cpu_percent": [OPTIONAL_NUMBER],
        "memory_percent": [OPTIONAL_NUMBER],
        "swap_percent": [OPTIONAL_NUMBER],
        "disk_percent": [OPTIONAL_NUMBER],
        "load1": [OPTIONAL_NUMBER],
    },
    "environments": [
        {
            "name": str,
            "domain": str,
            "health_url": str,
            "probe": {
                "at": str,
                "ok": bool,
                "status_code": (int, type(None)),
                "latency_ms": OPTIONAL_NUMBER,
                "error": OPTIONAL_TEXT,
                "failing_since": OPTIONAL_TEXT,
            },
            "uptime": {"24h": UPTIME, "7d": UPTIME, "30d": UPTIME},
            "availability": {"start": str, "step_s": int, "values": [OPTIONAL_NUMBER]},
            "latency_history": HISTORY,
            "errors": {"5m": WINDOW, "1h": WINDOW},
            "error_history": {"start": str, "step_s": int, "requests": [int], "errors_5xx": [int]},
        }
    ],
    "services": [
        {
            "name": str,
            "environment": OPTIONAL_TEXT,
            "configured": bool,
            "container": OPTIONAL_TEXT,
            "state": str,
            "health": OPTIONAL_TEXT,
            "restarts": (int, type(None)),
            "exit_code": (int, type(None)),
            "oom_killed": bool,
            "started_at": OPTIONAL_TEXT,
            "release": OPTIONAL_TEXT,
            "image": OPTIONAL_TEXT,
            "memory_used_bytes": (int, type(None)),
            "memory_limit_bytes": (int, type(None)),
            "memory_percent": OPTIONAL_NUMBER,
        }
    ],
    "certificates": [
        {
            "domain": str,
            "path": str,
            "not_after": str,
            "days_left": NUMBER,
            "issuer": str,
            "self_signed": bool,
            "covers_domain": bool,
            "error": type(None),
        }
    ],
    "releases": {
        "by_environment": {
            "prod": {"last_attempt": RELEASE, "live": RELEASE},
            "staging": {"last_attempt": RELEASE, "live": RELEASE},
        },
        "history": [RELEASE],
        "total": int,
        "malformed_lines": int,
        "error": OPTIONAL_TEXT,
    },
    "backups": JOBS,
    "restore_tests": JOBS,
    "access_log": {
        "path": str,
        "present": bool,
        "bytes_read": int,
        "bytes_skipped": int,
        "rotated": bool,
        "malformed_lines_1h": int,
        "by_environment": dict,
    },
    "log_services": [str],
    "logs": dict,
    "alerts": [{"severity": str, "area": str, "subject": str, "message": str}],
}


def check(value, schema, path="status"):
    """Every key of ``schema`` present in ``value`` with the declared type; lists non-empty."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{path}: {type(value).__name__} is not an object"
        for key, sub in schema.items():
            assert key in value, f"{path}.{key} missing"
            check(value[key], sub, f"{path}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list) and value, f"{path}: expected a non-empty list"
        for index, item in enumerate(value):
            check(item, schema[0], f"{path}[{index}]")
    else:
        assert isinstance(value, schema) and not (
            isinstance(value, bool)
            and bool not in (schema if isinstance(schema, tuple) else (schema,))
        ), f"{path}: {value!r} is not {schema}"


def test_every_api_field_is_present_and_typed(server):
    port, _ = server
    response = request(port, "/api/status")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    check(response.json(), STATUS_SCHEMA)


def test_host_numbers_are_live_psutil_readings(server):
    port, _ = server
    host = request(port, "/api/status").json()["host"]
    assert host["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert host["cpu"]["count"] == psutil.cpu_count()
    assert host["swap"]["total_bytes"] == psutil.swap_memory().total
    assert abs(host["uptime_s"] - (time.time() - psutil.boot_time())) < 30
    assert 0 <= host["cpu"]["percent"] <= 100


def test_the_realistic_state_is_what_the_page_gets(server):
    port, _ = server
    status = request(port, "/api/status").json()
    assert status["overall"] == "warning"
    subjects = {(a["area"], a["subject"]) for a in status["alerts"]}
    assert ("certificate", "staging.example.com") in subjects
    assert ("release", "staging") in subjects
    staging = status["releases"]["by_environment"]["staging"]
    assert staging["live"]["release"] == "2026.11.25-3"
    assert status["backups"]["last"]["verified"] is True
    assert status["access_log"]["malformed_lines_1h"] == 2


PATHS = [
    "/",
    "/static/app.js",
    "/static/pitr.js",
    "/static/style.css",
    "/static/favicon.svg",
    "/api/status",
    "/api/logs?service=app-prod",
    "/no/such/page",
    "/static/../config.json",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(fixtures.USER, "wrong"),
        basic("admin", fixtures.PASSWORD),
        "Bearer x",
        "Basic !!!",
    ],
)
def test_nothing_is_served_without_valid_credentials(server, path, authorization):
    port, _ = server
    response = request(port, path, authorization=authorization)
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="aiia status"')
    assert b"operator" not in response.body and b"prod" not in response.body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
def test_other_methods_need_credentials_too(server, method):
    port, _ = server
    assert request(port, "/api/status", method=method, authorization=None).status == 401
    expected = 200 if method == "HEAD" else 405
    assert request(port, "/api/status", method=method).status == expected


@pytest.mark.parametrize("path", ["/", "/api/status", "/no/such/page"])
@pytest.mark.parametrize("authorized", [True, False])
def test_security_headers_on_every_response(server, path, authorized):
    port, _ = server
    response = request(
        port,
        path,
        authorization=None if not authorized else basic(fixtures.USER, fixtures.PASSWORD),
    )
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name.lower()] == value
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert "python" not in response.headers["server"].lower()


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = self.styles = self.style_attributes = self.handlers = 0
        self.external = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in attributes
        if tag == "style":
            self.styles += 1
        if "style" in attributes:
            self.style_attributes += 1
        self.handlers += sum(1 for name in attributes if name.startswith("on"))
        for name in ("src", "href"):
            if name in attributes and not attributes[name].startswith("/"):
                self.external.append(attributes[name])

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def test_the_page_is_csp_clean_and_light(server):
    port, _ = server
    page = request(port, "/")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    parser = _PageParser()
    parser.feed(page.body.decode())
    assert (parser.inline_scripts, parser.styles, parser.style_attributes, parser.handlers) == (
        0,
        0,
        0,
        0,
    )
    assert parser.external == []  # every asset from this server, no CDN
    # (That nothing on the page breaks the CSP, and log text stays text, is shown in a real
    # browser: tests/e2e/test_dashboard_browser.py.)
    total = sum(
        len(request(port, p).body)
        for p in ("/", "/static/app.js", "/static/pitr.js", "/static/style.css",
                  "/static/favicon.svg")
    )
    assert total < 100 * 1024


def test_static_assets_revalidate_with_etags(server):
    port, _ = server
    first = request(port, "/static/app.js")
    again = request(port, "/static/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.body == b""


def test_the_last_50_log_lines_of_a_chosen_service(server):
    port, _ = server
    logs = request(port, "/api/logs?service=app-staging").json()
    assert logs["service"] == "app-staging"
    assert len(logs["lines"]) == 50
    assert logs["lines"][-1].startswith("20")  # the newest line is last
    assert "containers labelled aiia.service=app" in logs["source"]
    assert len(request(port, "/api/logs?service=nginx-access&lines=500").json()["lines"]) == 200


@pytest.mark.parametrize("service", ["../../etc/passwd", "", "nope", "app-prod/../x"])
def test_only_configured_log_services_are_served(server, service):
    port, _ = server
    response = request(port, f"/api/logs?service={service}")
    assert response.status == 404
    assert response.json() == {"error": "unknown service"}


def test_a_new_collection_shows_on_the_next_poll(realistic_host, server):
    port, _ = server
    before = request(port, "/api/status").json()
    with open(realistic_host.state.root / "state" / "releases.jsonl", "a") as records:
        records.write(
            json.dumps(
                {
                    "id": "prod-new",
                    "environment": "prod",
                    "release": "2026.11.26-9",
                    "started_at": before["generated_at"],
                    "outcome": "in_progress",
                }
            )
            + "\n"
        )
    time.sleep(1.1)  # a new whole-second collected_at
    realistic_host.collect()
    after = request(port, "/api/status").json()
    assert after["releases"]["history"][0]["release"] == "2026.11.26-9"
    assert after["collected_at"] > before["collected_at"]


def test_without_any_collection_yet_the_server_still_answers(tmp_path):
    root = fixtures.readable_tempdir("aiia-dashboard-empty-")
    try:
        state = fixtures.build_state(root)
        (root / "state" / "dashboard" / "dashboard.sqlite3").unlink()
        with fixtures.running_server(state.config_path) as (_, port):
            status = request(port, "/api/status").json()
        assert status["overall"] == "critical"
        assert status["alerts"][0]["area"] == "collector"
        assert status["services"] == [] and status["collected_at"] is None
        assert [e["name"] for e in status["environments"]] == ["prod", "staging"]
    finally:
        fixtures.remove_tree(root)


# ---- least privilege ---------------------------------------------------------------------------
AUDIT_WRAPPER = """
import os, sys
log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
WATCHED = ("socket.connect", "socket.__new__", "socket.bind", "open", "subprocess.Popen",
           "import")
"".encode("unicode_escape")  # load the codec now: an import inside the hook would recurse
busy = []
def hook(event, args):
    if event in WATCHED and not busy:
        busy.append(1)
        try:
            os.write(log, f"{event} {args!r}"[:400].encode("unicode_escape") + b"\\n")
        finally:
            busy.pop()
sys.addaudithook(hook)
from dashboard.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def audited(command_args: list[str], log: Path, python: str) -> list[str]:
    return [python, "-c", AUDIT_WRAPPER, str(log), *command_args]


def test_the_server_runs_unprivileged_and_never_touches_the_docker_socket(realistic_host):
    """Python's audit hooks record every socket and file the server process opens while
    it answers every route; the same hook on the collector shows what a touch looks like."""
    audit_dir = fixtures.readable_tempdir("aiia-dashboard-audit-")
    log = audit_dir / "server-audit.log"
    log.write_text("")
    log.chmod(0o666)  # written by the unprivileged server user
    config = realistic_host.state.config_path
    python = fixtures.server_python()
    with fixtures.running_server(
        config, command=audited(["serve", "--config", str(config)], log, python)
    ) as (process, port):
        assert psutil.Process(process.pid).uids().effective != 0
        for path in ("/", "/static/app.js", "/static/style.css", "/api/status"):
            assert request(port, path).status == 200
        for service in load_config(config).log_sources:
            assert request(port, f"/api/logs?service={service.service}").status == 200
    events = log.read_text().splitlines()
    assert any("status.json" in e for e in events)  # the hook did see the server's reads
    assert not [e for e in events if "docker" in e.lower()]
    assert not [e for e in events if e.startswith("socket.connect")]
    families = [
        int(m.group(1))
        for m in (re.match(r"socket\.__new__ \(<socket[^>]*>, (-?\d+),", e) for e in events)
        if m
    ]
    assert families and socket.AF_UNIX.value not in families  # TCP (accepted clients) only
    assert not [e for e in events if e.startswith("subprocess")]
    imported = {e.split()[1].strip("(',") for e in events if e.startswith("import ")}
    assert "dashboard.server" in imported
    assert not imported & {"dashboard.docker_api", "dashboard.collector", "sqlite3"}

    collector_log = audit_dir / "collector-audit.log"
    collector_log.write_text("")
    subprocess.run(
        audited(
            ["collect", "--config", str(realistic_host.state.collector_config_path)],
            collector_log,
            sys.executable,
        ),
        cwd=fixtures.REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    touched = [
        e
        for e in collector_log.read_text().splitlines()
        if e.startswith("socket.connect") and "docker.sock" in e
    ]
    assert touched, "the audit hook should see the collector connect to the Docker socket"
    fixtures.remove_tree(audit_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to show that root is refused")
def test_the_server_refuses_to_run_as_root(realistic_host):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dashboard",
            "serve",
            "--config",
            str(realistic_host.state.config_path),
        ],
        cwd=fixtures.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3
    assert "refusing to start" in result.stderr and "root" in result.stderr


def test_the_server_refuses_a_reachable_docker_socket(realistic_host, tmp_path):
    """A socket the server user could open (here: world-writable) stops it at start."""
    root = fixtures.readable_tempdir("aiia-dashboard-sock-")
    try:
        reachable = root / "docker.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(reachable))
        reachable.chmod(0o777)
        config = json.loads(realistic_host.state.config_path.read_text())
        config["docker_socket"] = str(reachable)
        path = root / "config.json"
        path.write_text(json.dumps(config))
        fixtures.open_up(root)
        result = subprocess.run(
            fixtures.server_command(path),
            cwd=fixtures.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            **fixtures.server_user_kwargs(),
        )
        listener.close()
        assert result.returncode == 3
        assert f"can open the Docker socket {reachable}" in result.stderr
    finally:
        fixtures.remove_tree(root)


def test_preflight_rules(tmp_path, realistic_host):
    config = load_config(realistic_host.state.config_path)
    with pytest.raises(PreflightError, match="running as root"):
        preflight(config, euid=0, can_access=lambda path, mode: False)
    preflight(config, euid=1000, can_access=lambda path, mode: False)

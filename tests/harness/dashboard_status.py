"""Test scaffolding for the dashboard: realistic host state and a stand-in Docker Engine.

Used by the unit tests (through conftest.py), the browser and e2e dashboard tests and the
benchmark (python3 -m bench.dashboard), all as ``tests.harness.dashboard_status`` with the
repository root on sys.path. Nothing here ships to a host.

- ``FakeDockerEngine``: answers the few Docker Engine API calls the collector makes
  (list, inspect, stats, logs) on a unix socket, from a list of ``FakeContainer``.
- ``build_state``: writes everything the collector reads — JSONL records, certificates made
  with the openssl CLI, an nginx access log in the aiia_json format, log files — and seeds
  30 days of probe rows and 24 h of host samples into SQLite, then the dashboard config.
- ``start_server``: runs ``python3 -m dashboard serve`` for real, as an unprivileged user
  when the test runs as root (the server refuses root).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from dashboard import store
from dashboard.auth import hash_password
from dashboard.host import cpu_counters
from dashboard.timestamps import format_utc

REPO_ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "operator", "correct horse battery staple"
NOBODY_UID = 65534
MiB = 1024 * 1024


# ---- a stand-in Docker Engine ---------------------------------------------------------------
@dataclass
class FakeContainer:
    name: str
    service: str
    environment: str
    memory_limit_mb: int
    memory_used_mb: float
    state: str = "running"
    health: str | None = "healthy"
    restarts: int = 0
    started_at: float = 0.0
    release: str | None = None
    image: str = ""
    exit_code: int = 0
    oom_killed: bool = False
    log_lines: list[str] = field(default_factory=list)
    stack: str | None = None
    process: str | None = None  # a release's process (releases.<env>.processes)
    extra_labels: dict[str, str] = field(default_factory=dict)  # e.g. aiia.health.path

    @property
    def id(self) -> str:
        return (self.name.encode().hex() * 4)[:64]

    @property
    def labels(self) -> dict[str, str]:
        labels = {"aiia.service": self.service, "aiia.environment": self.environment}
        if self.release:
            labels["aiia.release"] = self.release
        if self.process:
            labels["aiia.process"] = self.process
        if self.stack:
            labels["aiia.stack"] = self.stack
        return {**labels, **self.extra_labels}


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeDockerEngine:
    """``with FakeDockerEngine(path, containers) as engine:`` serves until the block ends."""

    def __init__(self, socket_path: Path, containers: list[FakeContainer]) -> None:
        self.socket_path = Path(socket_path)
        self.containers = containers
        self.requests: list[str] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def address_string(self) -> str:
                return "unix"

            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_GET(self):  # noqa: N802
                engine.requests.append(self.path)
                status, body, content_type = engine.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = _UnixHTTPServer(str(self.socket_path), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeDockerEngine:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.socket_path.unlink(missing_ok=True)

    def find(self, key: str) -> FakeContainer | None:
        return next((c for c in self.containers if key in (c.id, c.name)), None)

    def answer(self, raw_path: str) -> tuple[int, bytes, str]:
        url = urllib.parse.urlsplit(raw_path)
        query = urllib.parse.parse_qs(url.query)
        parts = url.path.strip("/").split("/")
        if parts[0].startswith("v1."):
            parts = parts[1:]
        if parts == ["containers", "json"]:
            wanted = json.loads(query.get("filters", ["{}"])[0]).get("label", [])
            listed = [
                {"Id": c.id, "Names": ["/" + c.name], "Labels": c.labels}
                for c in self.containers
                # Docker's label filter: "key" (present) or "key=value" (equal); all must match.
                if all(
                    c.labels.get(k.split("=", 1)[0]) == k.split("=", 1)[1]
                    if "=" in k
                    else k in c.labels
                    for k in wanted
                )
            ]
            return 200, json.dumps(listed).encode(), "application/json"
        if len(parts) == 3 and parts[0] == "containers":
            container = self.find(parts[1])
            if container is None:
                return 404, b'{"message":"No such container"}', "application/json"
            if parts[2] == "json":
                return 200, json.dumps(_inspect(container)).encode(), "application/json"
            if parts[2] == "stats":
                cache = 3 * MiB
                stats = {
                    "memory_stats": {}
                    if container.state != "running"
                    else {
                        "usage": int(container.memory_used_mb * MiB) + cache,
                        "stats": {"inactive_file": cache},
                        "limit": container.memory_limit_mb * MiB,
                    }
                }
                return 200, json.dumps(stats).encode(), "application/json"
            if parts[2] == "logs":
                tail = int(query.get("tail", ["100"])[0])
                frames = b""
                for line in container.log_lines[-tail:]:
                    payload = (line + "\n").encode()
                    stream = 2 if " ERROR " in line or "error" in line.lower() else 1
                    frames += bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
                return 200, frames, "application/vnd.docker.raw-stream"
        return 404, b'{"message":"page not found"}', "application/json"


def _inspect(c: FakeContainer) -> dict:
    health = {"Status": c.health, "FailingStreak": 0, "Log": []} if c.health else None
    state = {
        "Status": c.state,
        "Running": c.state == "running",
        "OOMKilled": c.oom_killed,
        "ExitCode": 0 if c.state == "running" else c.exit_code,
        "StartedAt": time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime(c.started_at)),
    }
    if health:
        state["Health"] = health
    return {
        "Id": c.id,
        "Name": "/" + c.name,
        "RestartCount": c.restarts,
        "State": state,
        "Config": {"Image": c.image, "Labels": c.labels},
        "HostConfig": {"Memory": c.memory_limit_mb * MiB},
    }


# ---- a stand-in for nginx in front of the apps' health endpoints --------------------------------
class FakeHealthEndpoint:
    """HTTPS on 127.0.0.1 that answers /health/ per Host header, like nginx + the apps.

    ``statuses`` maps a Host header to the status to answer; every request's Host header
    and TLS SNI name are recorded in ``seen``, its Host header and path in ``paths``.
    """

    def __init__(self, certificate: Path, key: Path, statuses: dict[str, int]) -> None:
        self.statuses = statuses
        self.seen: list[tuple[str | None, str | None]] = []
        self.paths: list[tuple[str | None, str]] = []
        endpoint = self
        sni_names: dict[int, str | None] = {}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_GET(self):  # noqa: N802
                host = self.headers.get("Host")
                endpoint.seen.append((host, sni_names.get(id(self.connection))))
                endpoint.paths.append((host, self.path))
                status = endpoint.statuses.get(host or "", 421)
                ok = status == 200
                body = json.dumps(
                    {
                        "status": "ok" if ok else "error",
                        "database": "ok",
                        "cache": "ok" if ok else "timeout",
                    }
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)

        def remember_sni(ssl_socket, server_name, _context):
            sni_names[id(ssl_socket)] = server_name

        context.sni_callback = remember_sni
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/health/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeHealthEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---- realistic content ------------------------------------------------------------------------
def realistic_containers(now: float) -> list[FakeContainer]:
    day = 86400

    def django_lines(env: str, release: str) -> list[str]:
        lines = []
        for i in range(120):
            ts = format_utc(now - (120 - i) * 29)
            if i % 37 == 5:
                lines.append(f"{ts} WARNING django.request Not Found: /api/v1/items/{4000 + i}/")
            elif i % 53 == 11:
                lines.append(
                    f"{ts} ERROR django.request Internal Server Error: /api/v1/reports/"
                    " (OperationalError: canceling statement due to statement timeout)"
                )
            else:
                lines.append(
                    f'{ts} INFO uvicorn.access 10.0.0.4:0 - "GET /api/v1/items/?page={i % 7}'
                    f' HTTP/1.1" 200 ({env} {release}, {12 + i % 30} ms)'
                )
        return lines

    postgres_log = [
        f"{format_utc(now - (60 - i) * 300)} UTC [{4000 + i}] LOG:  checkpoint complete:"
        f" wrote {20 + i % 17} buffers ({0.1 + (i % 5) / 10:.1f}%)"
        for i in range(60)
    ]
    return [
        FakeContainer(
            "aiia-postgres",
            "postgres",
            "platform",
            128,
            74.2,
            started_at=now - 12 * day,
            image="postgres:16.6-bookworm",
            log_lines=postgres_log,
        ),
        FakeContainer(
            "aiia-pgbouncer",
            "pgbouncer",
            "platform",
            16,
            4.1,
            started_at=now - 12 * day,
            image="edoburu/pgbouncer:v1.23.1",
            log_lines=[
                f"{format_utc(now - i * 60)} LOG stats: 3 xacts/s, 11 queries/s,"
                " in 2210 B/s, out 9120 B/s"
                for i in range(40, 0, -1)
            ],
        ),
        FakeContainer(
            "aiia-redis",
            "redis",
            "platform",
            64,
            38.7,
            started_at=now - 12 * day,
            image="redis:7.4.1-bookworm",
            log_lines=[
                f"1:M {time.strftime('%d %b %Y %H:%M:%S', time.gmtime(now - i * 300))}"
                " * 100 changes in 300 seconds. Saving..."
                for i in range(30, 0, -1)
            ],
        ),
        FakeContainer(
            "aiia-nginx",
            "nginx",
            "platform",
            32,
            11.4,
            started_at=now - 12 * day,
            image="nginx:1.27.3-bookworm",
            log_lines=[
                f"{time.strftime('%Y/%m/%d %H:%M:%S', time.gmtime(now - i * 400))}"
                " [notice] 1#1: signal 1 (SIGHUP) received from 4410, reconfiguring"
                for i in range(20, 0, -1)
            ],
        ),
        FakeContainer(
            "aiia-certbot",
            "certbot",
            "platform",
            32,
            6.3,
            health=None,
            started_at=now - 12 * day,
            image="certbot/certbot:v5.5.0",
            log_lines=[
                "Processing /etc/letsencrypt/renewal/prod.example.com.conf",
                "Certificate not yet due for renewal",
                "Processing /etc/letsencrypt/renewal/staging.example.com.conf",
                "Failed to renew certificate staging.example.com with error:"
                " Invalid response from http://staging.example.com/.well-known/"
                "acme-challenge/x: 404",
            ],
        ),
        FakeContainer(
            "aiia-app-prod-2026-11-25-1",
            "app",
            "prod",
            96,
            71.8,
            started_at=now - 1 * day,
            release="2026.11.25-1",
            image="ghcr.io/acme/aiia-backend:2026.11.25-1",
            log_lines=django_lines("prod", "2026.11.25-1"),
        ),
        # components/release/processes.py: a Celery worker of the same release.
        FakeContainer(
            "aiia-worker-prod-2026-11-25-1-0a1b2c3d",
            "process",
            "prod",
            64,
            48.0,
            started_at=now - 1 * day,
            release="2026.11.25-1",
            image="ghcr.io/acme/aiia-backend:2026.11.25-1",
            process="worker",
        ),
        FakeContainer(
            "aiia-app-staging-2026-11-25-3",
            "app",
            "staging",
            96,
            64.0,
            restarts=2,
            started_at=now - 25 * 60,
            release="2026.11.25-3",
            image="ghcr.io/acme/aiia-backend:2026.11.25-3",
            log_lines=django_lines("staging", "2026.11.25-3"),
        ),
    ]


def _release(
    env: str,
    started: float,
    release: str,
    previous: str,
    outcome: str,
    took: float,
    reason: str = "",
) -> dict:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    return {
        "id": f"{env}-{stamp}",
        "environment": env,
        "release": release,
        "image": f"ghcr.io/acme/aiia-backend:{release}",
        "image_digest": "sha256:" + "ab12" * 16,
        "previous_release": previous,
        "started_at": format_utc(started),
        "finished_at": format_utc(started + took),
        "outcome": outcome,
        "reason": reason,
    }


def release_records(now: float) -> list[dict]:
    day, hour = 86400, 3600
    return [
        _release("prod", now - 9 * day, "2026.11.17-1", "2026.11.12-2", "succeeded", 94),
        _release("staging", now - 7 * day, "2026.11.19-1", "2026.11.17-1", "succeeded", 88),
        _release(
            "prod",
            now - 6 * day,
            "2026.11.20-1",
            "2026.11.17-1",
            "failed_migration",
            312,
            "migration 0042_backfill_scores timed out after 300 s; nothing switched",
        ),
        _release(
            "prod", now - 6 * day + 2 * hour, "2026.11.20-2", "2026.11.17-1", "succeeded", 101
        ),
        _release("staging", now - 3 * day, "2026.11.24-2", "2026.11.19-1", "succeeded", 90),
        _release(
            "prod",
            now - 2 * day,
            "2026.11.24-1",
            "2026.11.20-2",
            "switched_back",
            171,
            "post-switch smoke test: /health/ answered 503 (database: timeout); "
            "2026.11.20-2 put back",
        ),
        _release(
            "staging", now - 1 * day - 3 * hour, "2026.11.25-3", "2026.11.24-2", "succeeded", 86
        ),
        _release("prod", now - 1 * day, "2026.11.25-1", "2026.11.20-2", "succeeded", 97),
        _release(
            "staging",
            now - 40 * 60,
            "2026.11.26-2",
            "2026.11.25-3",
            "failed_health_check",
            131,
            "aiia-app-staging-2026-11-26-2 unhealthy after 120 s: /health/ 503 "
            "(cache: redis AUTH failed); never received traffic",
        ),
    ]


def backup_records(now: float) -> list[dict]:
    records = []
    today_3am = now - (now % 86400) + 3 * 3600
    if today_3am > now:
        today_3am -= 86400
    for days_ago in range(9, -1, -1):
        started = today_3am - days_ago * 86400
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
        failed = days_ago == 4
        records.append(
            {
                "id": f"backup-{stamp}",
                "started_at": format_utc(started),
                "finished_at": format_utc(started + 143 + days_ago),
                "outcome": "failed" if failed else "succeeded",
                "archive": f"/srv/aiia/backups/aiia-{stamp}.tar.gpg",
                "size_bytes": 0 if failed else 48_200_000 + days_ago * 310_000,
                "verified": not failed,
                "databases": ["aiia_prod", "aiia_staging"],
                "reason": "gpg: encryption failed: public key not found (key rotated?)"
                if failed
                else "",
            }
        )
    return records


def restore_records(now: float) -> list[dict]:
    runs = []
    for days_ago, outcome, reason in (
        (86, "succeeded", ""),
        (
            56,
            "failed",
            'pg_restore: error: could not execute query: role "aiia_prod" does not exist',
        ),
        (25, "succeeded", ""),
    ):
        started = now - days_ago * 86400
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
        runs.append(
            {
                "id": f"restore-{stamp}",
                "started_at": format_utc(started),
                "finished_at": format_utc(started + 212),
                "outcome": outcome,
                "archive": f"/srv/aiia/backups/aiia-{stamp}.tar.gpg",
                "database": "aiia_restore_test",
                "tables": 0 if reason else 14,
                "rows": 0 if reason else 18_234 + days_ago,
                "reason": reason,
            }
        )
    return runs


def make_certificate(
    directory: Path, domain: str, days: int, ca: tuple[Path, Path] | None = None
) -> Path:
    """A real certificate from the openssl CLI; signed by ``ca`` (cert, key) or self-signed."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "privkey.pem", directory / "fullchain.pem"
    subject = f"/CN={domain}"
    extension = f"subjectAltName=DNS:{domain}"
    if ca is None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                str(days),
                "-subj",
                subject,
                "-addext",
                extension,
            ],
            check=True,
            capture_output=True,
        )
    else:
        csr = directory / "request.csr"
        subprocess.run(
            [
                "openssl",
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                subject,
                "-addext",
                extension,
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca[0]),
                "-CAkey",
                str(ca[1]),
                "-CAcreateserial",
                "-out",
                str(cert),
                "-days",
                str(days),
                "-copy_extensions",
                "copy",
            ],
            check=True,
            capture_output=True,
        )
    return cert


def make_ca(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "ca.key", directory / "ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "3650",
            "-subj",
            "/O=Test CA (fixture)/CN=Test Issuing CA R1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def access_log_line(
    ts: float, env: str, status: int, uri: str = "/api/v1/items/", release: str = "2026.11.25-1"
) -> str:
    host = {
        "prod": "prod.example.com",
        "staging": "staging.example.com",
        "status": "devstatus.example.com",
    }.get(env, "203.0.113.9")
    return json.dumps(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts)),
            "env": env,
            "host": host,
            "method": "GET",
            "uri": uri,
            "status": status,
            "bytes": 512,
            "request_time": 0.004,
            "upstream": "10.0.0.5:8000",
            "upstream_status": str(status),
            "release": release,
        },
        separators=(",", ":"),
    )


def write_access_log(path: Path, now: float, seconds: int = 7200, seed: int = 7) -> None:
    rng = random.Random(seed)
    lines = []
    ts = now - seconds
    while ts < now - 1:
        ts += rng.expovariate(1.6)
        env = rng.choices(["prod", "staging", "status", "-"], weights=[80, 14, 5, 1])[0]
        recent = ts > now - 1800
        error_odds = {"prod": 0.0015, "staging": 0.03 if recent else 0.004}.get(env, 0.0)
        status = 502 if rng.random() < error_odds else rng.choice([200, 200, 200, 200, 304, 404])
        lines.append(access_log_line(ts, env, status))
    lines.insert(len(lines) // 2, '{"time":"2026-11-26T15:04:05+00:00","env":"prod","status":')
    lines.insert(len(lines) // 3, "GET /half-written-line HTTP/1.1 200")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def seed_history(database: Path, now: float, seed: int = 11) -> None:
    """30 days of probes with outages and a collector gap; 24 h of host samples."""
    rng = random.Random(seed)
    day, minute = 86400, 60
    outages = {
        "prod": [(now - 11 * day, 18 * minute), (now - 3 * day, 5 * minute)],
        "staging": [
            (now - 16 * day, 55 * minute),
            (now - 7 * 3600, 12 * minute),
            (now - 2 * day, 25 * minute),
        ],
    }
    collector_gap = (now - 5 * day, 47 * minute)
    start = int(now - 30 * day)
    with store.open_store(database) as db:
        for env, base_latency in (("prod", 28.0), ("staging", 41.0)):
            rows = []
            for ts in range(start - start % 60, int(now) - 60, 60):
                if collector_gap[0] <= ts < collector_gap[0] + collector_gap[1]:
                    continue
                down = any(s <= ts < s + length for s, length in outages[env])
                hour = (ts % day) / 3600
                latency = base_latency * (
                    1 + 0.35 * math.sin(hour / 24 * 2 * math.pi)
                ) + rng.expovariate(1 / 6)
                rows.append(
                    store.ProbeRow(
                        ts,
                        env,
                        not down,
                        503 if down else 200,
                        round(latency, 1),
                        'HTTP 503: {"status": "error", "database": "timeout"}' if down else None,
                    )
                )
            store.insert_probes(db, rows)
        # Host history around this machine's real numbers, so the live values the server
        # reads from psutil continue the graphs instead of jumping away from them.
        memory_now = psutil.virtual_memory().percent
        swap_now = psutil.swap_memory().percent
        disk_now = psutil.disk_usage("/").percent
        busy, total = cpu_counters()
        for ts in range(int(now - day), int(now) - 60, 60):
            hour = (ts % day) / 3600
            cpu = 9 + 7 * math.sin((hour - 9) / 24 * 2 * math.pi) + rng.uniform(0, 4)
            if abs(ts - (now - 2.5 * 3600)) < 600:
                cpu += 45  # the 6-hour graph shows a spike (a release's collectstatic)
            memory = memory_now * (0.97 + 0.03 * math.sin(hour / 3)) + rng.uniform(0, 0.5)
            store.insert_host_sample(
                db,
                store.HostSample(
                    ts,
                    round(cpu, 1),
                    round(min(memory, 100), 1),
                    round(swap_now * (0.9 + 0.1 * (ts - now + day) / day), 1),
                    round(disk_now - 0.4 * (now - ts) / day, 2),
                    round(max(0.05, cpu / 30 + rng.uniform(0, 0.1)), 2),
                    busy,
                    total,
                ),
            )


@dataclass
class FixtureState:
    root: Path
    config_path: Path
    collector_config_path: Path
    docker_socket: Path
    now: float


def build_state(
    root: Path,
    now: float | None = None,
    iterations: int = 1000,
    poll_seconds: int = 5,
    health_url: str = "http://127.0.0.1:9/health/",
) -> FixtureState:
    """Everything a realistic host would have, under ``root``. Returns the config paths.

    Two configs: the collector's names the fake Docker socket; the server's names a path
    where no socket exists, exactly as on a host where the server has no socket access.
    """
    now = time.time() if now is None else now
    state = root / "state"
    dashboard_state = state / "dashboard"
    dashboard_state.mkdir(parents=True, exist_ok=True)
    for name, records in (
        ("releases.jsonl", release_records(now)),
        ("backups.jsonl", backup_records(now)),
        ("restore-tests.jsonl", restore_records(now)),
    ):
        lines = [json.dumps(r) for r in records]
        if name == "releases.jsonl":
            # An attempt is first appended as in_progress, then completed under the same id.
            last = records[-1]
            lines.insert(-1, json.dumps({**last, "outcome": "in_progress", "finished_at": None}))
            lines.insert(3, "{not json")
        (state / name).write_text("\n".join(lines) + "\n")
    ca = make_ca(root / "ca")
    certificates = []
    for domain, days in (
        ("prod.example.com", 63),
        ("staging.example.com", 9),
        ("devstatus.example.com", 63),
    ):
        path = make_certificate(root / "nginx" / "tls" / domain, domain, days, ca=ca)
        certificates.append({"domain": domain, "path": str(path)})
    write_access_log(root / "logs" / "nginx" / "access.log", now)
    for env in ("prod", "staging"):
        django = root / "logs" / env / "django.log"
        django.parent.mkdir(parents=True, exist_ok=True)
        django.write_text(
            "".join(
                f"{format_utc(now - (80 - i) * 45)} INFO aiia.views handled in {8 + i % 9} ms\n"
                for i in range(80)
            )
        )
    seed_history(dashboard_state / "dashboard.sqlite3", now)
    docker_socket = root / "docker.sock"
    config = {
        "listen_host": "127.0.0.1",
        "listen_port": 9100,
        "state_dir": str(dashboard_state),
        "root_dir": str(root),
        "environments": [
            {
                "name": "prod",
                "domain": "prod.example.com",
                "host_header": "prod.example.com",
                "health_url": health_url,
            },
            {
                "name": "staging",
                "domain": "staging.example.com",
                "host_header": "staging.example.com",
                "health_url": health_url,
            },
        ],
        "services": [
            {"name": "postgres", "container_label": "postgres", "memory_limit_mb": 128},
            {"name": "pgbouncer", "container_label": "pgbouncer", "memory_limit_mb": 16},
            {"name": "redis", "container_label": "redis", "memory_limit_mb": 64},
            {"name": "nginx", "container_label": "nginx", "memory_limit_mb": 32},
            {"name": "certbot", "container_label": "certbot", "memory_limit_mb": 32},
            {
                "name": "app-prod",
                "container_label": "app",
                "environment": "prod",
                "memory_limit_mb": 96,
            },
            {
                "name": "app-staging",
                "container_label": "app",
                "environment": "staging",
                "memory_limit_mb": 96,
            },
            {
                "name": "processes-prod",
                "container_label": "process",
                "environment": "prod",
                "memory_limit_mb": 64,
            },
        ],
        "certificates": certificates,
        "access_log": str(root / "logs" / "nginx" / "access.log"),
        "releases_file": str(state / "releases.jsonl"),
        "backups_file": str(state / "backups.jsonl"),
        "restore_tests_file": str(state / "restore-tests.jsonl"),
        "log_sources": {
            "app-prod": {"container_label": "app", "environment": "prod"},
            "app-staging": {"container_label": "app", "environment": "staging"},
            "django-prod": str(root / "logs" / "prod" / "django.log"),
            "django-staging": str(root / "logs" / "staging" / "django.log"),
            "nginx": "aiia-nginx",
            "nginx-access": str(root / "logs" / "nginx" / "access.log"),
            "postgres": "aiia-postgres",
            "pgbouncer": "aiia-pgbouncer",
            "redis": "aiia-redis",
            "certbot": "aiia-certbot",
        },
        "auth_user": USER,
        "auth_password_hash": hash_password(PASSWORD, iterations=iterations),
        "docker_socket": str(root / "no-docker-here.sock"),
        "poll_seconds": poll_seconds,
        "probe_timeout_seconds": 1,
    }
    config_path = root / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    collector_config_path = root / "collector-config.json"
    collector_config_path.write_text(
        json.dumps({**config, "docker_socket": str(docker_socket)}, indent=2)
    )
    return FixtureState(root, config_path, collector_config_path, docker_socket, now)


# ---- processes ----------------------------------------------------------------------------
def readable_tempdir(prefix: str) -> Path:
    """A temp dir the unprivileged server user can read (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def open_up(root: Path) -> None:
    """Make ``root`` readable by the server user, as config/state are by aiia-dashboard."""
    for path in [root, *root.rglob("*")]:
        if path.is_socket():
            continue
        path.chmod(0o755 if path.is_dir() else 0o644)


def share_state_dir(config_path: Path) -> None:
    """As on a host: the state dir is setgid to the server's group, mode 2750, so files the
    collector (root) writes later are readable by the server and nobody else."""
    if os.geteuid() != 0:
        return  # collector and server run as the same user: nothing to share
    state_dir = Path(json.loads(config_path.read_text())["state_dir"])
    for path in [state_dir, *state_dir.rglob("*")]:
        os.chown(path, 0, NOBODY_UID)
        if path.is_dir():
            path.chmod(0o2750)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_port(config_path: Path, port: int) -> None:
    config = json.loads(config_path.read_text())
    config["listen_port"] = port
    config_path.write_text(json.dumps(config, indent=2))


def run_collector(config_path: Path, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "dashboard", "collect", "--config", str(config_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def server_user_kwargs() -> dict:
    """Run the server as ``nobody`` when we are root (it refuses root, as it should)."""
    if os.geteuid() == 0:
        return {"user": NOBODY_UID, "group": NOBODY_UID, "extra_groups": []}
    return {}


@functools.cache
def server_python() -> str:
    """An interpreter with psutil that the server user can run.

    On a host that is Debian's ``/usr/bin/python3`` with ``python3-psutil``, which is also
    the first choice here; a virtualenv under /root is not executable by ``nobody``.
    """
    candidates = [os.environ.get("AIIA_DASHBOARD_PYTHON"), "/usr/bin/python3", sys.executable]
    for python in filter(None, candidates):
        probe = (
            subprocess.run(
                [python, "-c", "import psutil"],
                capture_output=True,
                check=False,
                **server_user_kwargs(),
            )
            if Path(python).exists()
            else None
        )
        if probe is not None and probe.returncode == 0:
            return python
    raise RuntimeError(
        "no Python with psutil runnable by the server user: "
        "apt-get install python3-psutil (or set AIIA_DASHBOARD_PYTHON)"
    )


def server_command(config_path: Path, python: str | None = None) -> list[str]:
    return [python or server_python(), "-m", "dashboard", "serve", "--config", str(config_path)]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: "
                f"{process.stderr.read() if process.stderr else ''}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server did not listen on {port} within {timeout} s")


@contextlib.contextmanager
def running_server(
    config_path: Path, command: list[str] | None = None
) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    set_port(config_path, port)
    open_up(config_path.parent)
    share_state_dir(config_path)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen(
        command or server_command(config_path),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **server_user_kwargs(),
    )
    try:
        wait_for_port(port, process)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class RealisticHost:
    state: FixtureState
    health: FakeHealthEndpoint
    docker: FakeDockerEngine

    def collect(self) -> subprocess.CompletedProcess:
        return run_collector(self.state.collector_config_path)


@contextlib.contextmanager
def realistic_host(
    root: Path, iterations: int = 1000, poll_seconds: int = 5
) -> Iterator[RealisticHost]:
    """State files + a stand-in Docker Engine + health endpoints, all on this machine."""
    certificate = make_certificate(root / "health-tls", "prod.example.com", 30)
    statuses = {"prod.example.com": 200, "staging.example.com": 200}
    with FakeHealthEndpoint(certificate, certificate.with_name("privkey.pem"), statuses) as health:
        state = build_state(
            root, iterations=iterations, poll_seconds=poll_seconds, health_url=health.url
        )
        with FakeDockerEngine(state.docker_socket, realistic_containers(state.now)) as docker:
            yield RealisticHost(state, health, docker)

"""The unprivileged half: the page and its JSON API, behind HTTP Basic authentication.

Reads only the config file, the collector's files in the state directory and psutil's
host numbers. It never imports the Docker client, and ``preflight`` refuses to start as
root or when the Docker socket is reachable, so a bug here cannot become host control.

Routes (every one, assets included, answers 401 without valid credentials):

    GET /                   the page (static/index.html)
    GET /static/<file>      app.js, style.css, favicon.svg
    GET /api/status         everything the page shows, one JSON document
    GET /api/logs?service=  the last 50 lines of one service's log
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import __version__, alerts
from .audit import LoginAudit, client_address
from .auth import BasicAuthenticator
from .config import DEFAULT_DOCKER_SOCKET, Config
from .files import read_json
from .host import live_host
from .notify_config import TEST_REQUEST
from .timestamps import format_utc, parse_utc

STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
LOG_LINES_SHOWN = 50
HOST_CACHE_SECONDS = 2.0

SECURITY_HEADERS = {
    # No inline script or style anywhere: the page is three files from this server.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class PreflightError(RuntimeError):
    pass


def preflight(config: Config, euid: int | None = None, can_access=os.access) -> None:
    """Refuse to serve with privilege: no root, no reachable Docker socket."""
    problems = []
    if (os.geteuid() if euid is None else euid) == 0:
        problems.append(
            "running as root; run the server as the aiia-dashboard user "
            "(systemd User=) or, in a container, as an unprivileged uid"
        )
    sockets = {Path(DEFAULT_DOCKER_SOCKET), Path("/run/docker.sock"), config.docker_socket}
    for path in sorted(sockets):
        if path.exists() and can_access(path, os.R_OK | os.W_OK):
            problems.append(
                f"this user can open the Docker socket {path}; the server must not "
                "(remove it from the docker group / do not mount the socket)"
            )
    if problems:
        raise PreflightError("refusing to start the dashboard server: " + "; ".join(problems))


class _StaticFile:
    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.content_type = STATIC_TYPES[path.suffix]
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


class Dashboard:
    """Reads the collector's files (re-parsed only when they change) and builds responses."""

    def __init__(self, config: Config, clock=time.time) -> None:
        self.config = config
        self.clock = clock
        self.authenticator = BasicAuthenticator(config.auth_users)
        self.audit = LoginAudit()
        self.static = {
            f"/static/{p.name}": _StaticFile(p)
            for p in sorted(STATIC_DIR.iterdir())
            if p.suffix in STATIC_TYPES
        }
        self.static["/"] = self.static.pop("/static/index.html")
        self._lock = threading.Lock()
        self._snapshot_key: tuple[int, int] | None = None
        self._snapshot: dict[str, Any] = {}
        self._snapshot_error: str | None = None
        self._host: tuple[float, dict[str, Any]] | None = None
        live_host(config.root_dir)  # primes psutil's CPU % so the first poll is meaningful

    def snapshot(self) -> dict[str, Any]:
        try:
            stat = self.config.status_path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            return {}
        with self._lock:
            if key != self._snapshot_key:
                try:
                    self._snapshot = json.loads(self.config.status_path.read_bytes())
                except (OSError, ValueError) as error:
                    # Keep serving the last good snapshot, and say why it is not the newest.
                    reason = getattr(error, "strerror", None) or str(error)
                    self._snapshot_error = f"cannot read {self.config.status_path}: {reason}"
                    return self._snapshot
                self._snapshot_key = key
                self._snapshot_error = None
            return self._snapshot

    def host(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            if self._host is None or now - self._host[0] > HOST_CACHE_SECONDS:
                self._host = (now, live_host(self.config.root_dir))
            return self._host[1]

    def status(self) -> dict[str, Any]:
        snapshot = self.snapshot()
        now = self.clock()
        collected = parse_utc(snapshot.get("collected_at"))
        document = {
            "generated_at": format_utc(now),
            "version": __version__,
            "poll_seconds": self.config.poll_seconds,
            "collected_at": snapshot.get("collected_at"),
            "snapshot_error": self._snapshot_error,
            "collector_age_s": round(now - collected) if collected is not None else None,
            "collector": snapshot.get("collector")
            or {"errors": [], "every_s": None, "duration_ms": None},
            "host": self.host(),
            "host_history": snapshot.get("host_history"),
            "environments": snapshot.get("environments")
            or [
                {
                    "name": e.name,
                    "domain": e.domain,
                    "health_url": e.health_url,
                    "probe": None,
                    "uptime": {},
                    "errors": {},
                    "availability": None,
                    "latency_history": None,
                    "error_history": None,
                }
                for e in self.config.environments
            ],
            "services": snapshot.get("services") or [],
            "host_access": snapshot.get("host_access"),
            "certificates": snapshot.get("certificates") or [],
            "releases": snapshot.get("releases")
            or {
                "by_environment": {},
                "history": [],
                "total": 0,
                "malformed_lines": 0,
                "error": None,
            },
            "backups": snapshot.get("backups") or _empty_jobs(),
            "restore_tests": snapshot.get("restore_tests") or _empty_jobs(),
            "pitr": snapshot.get("pitr"),
            "access_log": snapshot.get("access_log") or {},
            "log_services": [source.service for source in self.config.log_sources],
            "logs": snapshot.get("logs") or {},
            "notifications": read_json(self.config.notify and self.config.notify.summary_file),
        }
        found = alerts.evaluate(document, now)
        document["alerts"] = found
        document["overall"] = alerts.overall(found)
        return document

    def request_notify_test(self) -> tuple[int, dict[str, Any]]:
        """Leave the request for the notifier's next run (it alone has the secrets)."""
        notify = self.config.notify
        if notify is None or not notify.channels:
            return 409, {"error": "no alert channel is configured (platform.alerts)"}
        if notify.requests_dir is None:
            return 409, {"error": "no test from the page on this host: `make alerts-test`"}
        try:
            (notify.requests_dir / TEST_REQUEST).touch()
        except OSError as error:
            return 500, {"error": f"cannot leave the request: {error.strerror}"}
        return 202, {"requested_at": format_utc(self.clock()),
                     "message": "the notifier sends it within a minute; results below"}

    def logs(self, service: str, count: int) -> dict[str, Any] | None:
        if self.config.log_source(service) is None:
            return None  # only configured names: the path below never comes from the request
        path = self.config.logs_dir / f"{service}.json"
        try:
            saved = json.loads(path.read_bytes())
        except FileNotFoundError:
            saved = {
                "source": self.config.log_source(service).describe(),
                "collected_at": None,
                "error": "not collected yet",
                "lines": [],
            }
        except (OSError, ValueError) as error:
            saved = {"source": "", "collected_at": None, "error": str(error), "lines": []}
        lines = saved.get("lines") or []
        return {
            "service": service,
            "source": saved.get("source", ""),
            "collected_at": saved.get("collected_at"),
            "error": saved.get("error"),
            "lines": lines[-count:],
        }


def _empty_jobs() -> dict[str, Any]:
    return {
        "last": None,
        "last_good": None,
        "history": [],
        "total": 0,
        "malformed_lines": 0,
        "error": None,
    }


NOTIFY_TEST_PATH = "/api/notify-test"
# A header no cross-site form or image can send (a script on another site would need a CORS
# preflight, which this server never answers): with Basic auth, which browsers attach to
# any request to the site, it is what makes a request the page's own.
REQUEST_HEADER, REQUEST_VALUE = "X-Aiia-Request", "notify-test"


def cross_site_problem(headers) -> str | None:
    """Why a POST is not the page's own (cross-site request forgery), or None."""
    if headers.get(REQUEST_HEADER) != REQUEST_VALUE:
        return f"missing the {REQUEST_HEADER} header the page sends"
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return f"a {site} request (Sec-Fetch-Site); only the page itself may ask"
    origin, host = headers.get("Origin"), headers.get("Host")
    if origin is not None and (
            host is None or urllib.parse.urlsplit(origin).hostname != host.rsplit(":", 1)[0]):
        return "the request comes from another origin"
    return None


class DashboardHandler(BaseHTTPRequestHandler):
    dashboard: Dashboard  # set on the subclass built by make_server
    protocol_version = "HTTP/1.1"
    server_version = "aiia-dashboard"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection does not hold a thread for ever

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Used by http.server itself for bad requests: plain text, still with our headers.
        self.close_connection = True
        text = f"{code} {message or HTTPStatus(code).phrase}\n".encode()
        self._send(code, text, "text/plain; charset=utf-8", {"Cache-Control": "no-store"})

    def _json(self, document: Any, status: int = 200) -> None:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._send(status, body, "application/json", {"Cache-Control": "no-store"})

    def _authorized(self) -> bool:
        attempt = self.dashboard.authenticator.authenticate(self.headers.get("Authorization"))
        self.dashboard.audit.record(attempt, client_address(
            self.client_address[0], self.headers.get("X-Real-IP"),
            self.dashboard.config.trusted_proxies))
        if attempt.user is not None:
            return True
        self._send(
            401,
            b"401 authentication required\n",
            "text/plain; charset=utf-8",
            {
                "WWW-Authenticate": 'Basic realm="aiia status", charset="UTF-8"',
                "Cache-Control": "no-store",
            },
        )
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._authorized():
            return
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/status":
            self._json(self.dashboard.status())
        elif url.path == "/api/logs":
            query = urllib.parse.parse_qs(url.query)
            try:
                count = min(max(int(query.get("lines", [LOG_LINES_SHOWN])[0]), 1), 200)
            except ValueError:
                count = LOG_LINES_SHOWN
            logs = self.dashboard.logs(query.get("service", [""])[0], count)
            if logs is None:
                self._json({"error": "unknown service"}, status=404)
            else:
                self._json(logs)
        elif url.path in self.dashboard.static:
            asset = self.dashboard.static[url.path]
            if self.headers.get("If-None-Match") == asset.etag:
                self.send_response(304)
                self.send_header("ETag", asset.etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(
                200,
                asset.body,
                asset.content_type,
                {"ETag": asset.etag, "Cache-Control": "private, no-cache"},
            )
        else:
            self._send(404, b"404 not found\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET  # noqa: N815

    def _not_allowed(self) -> None:
        if self._authorized():
            self._send(405, b"405 read-only\n", "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        """The one write: ask the notifier for a test message (the button on the page)."""
        if urllib.parse.urlsplit(self.path).path != NOTIFY_TEST_PATH:
            self._not_allowed()
            return
        if not self._authorized():
            return
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > 1024:
            self._json({"error": "a test request has no body"}, status=413)
            return
        self.rfile.read(int(length))
        problem = cross_site_problem(self.headers)
        if problem is not None:
            self._json({"error": problem}, status=403)
            return
        status, document = self.dashboard.request_notify_test()
        self._json(document, status=status)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Polls every few seconds would flood the journal; keep failures only.
        if isinstance(code, HTTPStatus):
            code = code.value
        if isinstance(code, int) and code >= 400:
            self.log_message('"%s" %s', self.requestline[:200], code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[DashboardHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


def make_server(config: Config) -> DashboardServer:
    handler = type("BoundDashboardHandler", (DashboardHandler,), {"dashboard": Dashboard(config)})
    return DashboardServer((config.listen_host, config.listen_port), handler)


def serve(config: Config, allow_privileged: bool = False) -> None:
    if allow_privileged:
        print(
            "WARNING: --allow-privileged: skipping the root / Docker socket checks", file=sys.stderr
        )
    else:
        preflight(config)
    server = make_server(config)
    host, port = server.server_address[:2]
    print(
        f"aiia-dashboard {__version__} serving on http://{host}:{port}/ (state {config.state_dir})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=1.0)
    finally:
        server.server_close()

"""`aiia:platform.nginx`: the one server the internet reaches, for every environment and the
status domain: how it keeps connections across a reload, how many it holds in its memory,
what one client address and one environment may take of them, and the request bodies it
accepts where."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.settings.checks import NAMESPACE, Problems, check_positive
from components.settings.releases import RELEASE_DRAIN_SECONDS


@dataclass(frozen=True)
class NginxSettings:
    memory_mb: int = 32
    general_rate_per_second: int = 200
    api_rate_per_second: int = 500
    http_port: int = 80
    https_port: int = 443
    bind_address: str = "0.0.0.0"  # noqa: S104 - the public entry point; local uses 127.0.0.1
    # How long an old worker keeps in-flight requests and WebSockets after a reload. It must
    # outlast a release's watch and drain, so that a WebSocket held by an old worker is
    # closed by the previous release (a normal close) when Pulumi stops it, not cut by nginx,
    # and outlast keepalive_min_timeout, so that no kept-alive connection is cut either.
    worker_shutdown_timeout_seconds: int = 60
    # How long a client's idle keep-alive connection stays open. Clients that keep theirs
    # longer meet the race every keep-alive server has (a request crossing the close). While
    # keepalive_min_timeout runs, nginx cannot close an idle connection to make room for a
    # new one (src/http/ngx_http_request.c, ngx_http_set_keepalive): this is how long one
    # address's idle connections hold worker_connections, so 10 s, not 30.
    keepalive_timeout_seconds: int = 10
    # For how long after its last response a kept-alive connection survives a reload (nginx
    # keepalive_min_timeout, 1.27.4+). The default, keepalive_timeout_seconds, means a reload
    # closes no idle connection: its next request is answered by the old worker (and the
    # release that served before) with "Connection: close", and the client reconnects to
    # the new one. 0 is nginx's own default: every reload closes idle connections at once,
    # and a client that sends on one at that moment gets a reset or an empty reply.
    keepalive_min_timeout_seconds: int | None = None
    # Connections nginx's one worker holds at once (clients', and its own to the apps).
    # Sized to memory_mb, not to traffic: see NGINX_CONNECTION_KB below; past it, new
    # connections wait in the kernel's queue instead of the worker being OOM-killed.
    worker_connections: int = 300
    # Requests in progress at once (a WebSocket for its whole life, each HTTP/2 stream),
    # per client address and per environment (the status domain counts as one). All of the
    # release tests' traffic comes from one address: 8 + 4 + 4 kept-alive connections, one
    # WebSocket and HTTP/2 paced at 20 r/s (tests/harness/traffic.py), 33 at once when the
    # app's latency reached 0.85 s on a loaded machine; 48 holds up to ~1.6 s.
    connections_per_address: int = 48
    connections_per_environment: int = 72
    websockets_per_address: int = 8
    websockets_per_environment: int = 32
    # Request bodies: at most max_body_mb, and upload_max_body_mb under upload_paths (the
    # app's upload endpoints, each a path prefix like "/api/"; bodies are buffered to disk).
    max_body_mb: int = 1
    upload_max_body_mb: int = 20
    upload_paths: tuple[str, ...] = ("/api/",)

    @property
    def reload_keeps_idle_seconds(self) -> int:
        """keepalive_min_timeout in effect: how long an old worker may still take a request."""
        if self.keepalive_min_timeout_seconds is None:
            return self.keepalive_timeout_seconds
        return self.keepalive_min_timeout_seconds


# nginx's memory, measured on the stand-in (nginx 1.30, OpenSSL 3) under its 32 MB limit:
# master, worker and cache processes ~4.5 MB; a TLS client connection waiting for its
# headers ~34 KB (an idle kept-alive one ~23, a WebSocket with its app side ~60 for two
# connections). Fixed: those processes, a second worker's start during a reload, and the
# shared zones nginx.conf declares, full (~5 MB). A reload keeps the old worker, its
# connections and its heap, beside the new one: hence two workers' connections.
NGINX_CONNECTION_KB = 34
NGINX_FIXED_MB = 12
UPLOAD_PATH_RE = re.compile(r"^/(?:[A-Za-z0-9._~-]+/)+$")
NOT_UPLOAD_PATHS = ("/static/", "/ws/", "/healthz/")


def check_nginx_limits(nginx: NginxSettings, problems: Problems) -> None:
    """Connections that fit nginx's memory, limits that nest, upload paths it can route."""
    key = f"{NAMESPACE}:platform.nginx"
    needed_mb = NGINX_FIXED_MB + 2 * nginx.worker_connections * NGINX_CONNECTION_KB / 1024
    if needed_mb > nginx.memory_mb:
        problems.add(f"{key}.worker_connections={nginx.worker_connections} needs "
                     f"{needed_mb:.0f} MB at worst ({NGINX_FIXED_MB} MB + two workers' "
                     f"connections at {NGINX_CONNECTION_KB} KB each, during a reload) over "
                     f"memory_mb={nginx.memory_mb}; lower worker_connections or raise memory_mb")
    if 4 * nginx.connections_per_environment > nginx.worker_connections:
        problems.add(f"{key}.connections_per_environment={nginx.connections_per_environment}"
                     f" lets one environment hold more than half of worker_connections="
                     f"{nginx.worker_connections} (two each: the client's and the app's); "
                     "lower it to a quarter of worker_connections at most")
    for narrow, wide in (("websockets_per_address", "connections_per_address"),
                         ("websockets_per_environment", "connections_per_environment"),
                         ("connections_per_address", "connections_per_environment"),
                         ("max_body_mb", "upload_max_body_mb")):
        check_positive(getattr(nginx, narrow), f"{key}.{narrow}", problems)
        if getattr(nginx, narrow) > getattr(nginx, wide):
            problems.add(f"{key}.{narrow}={getattr(nginx, narrow)} must not exceed "
                         f"{wide}={getattr(nginx, wide)}")
    paths = nginx.upload_paths
    if not _upload_paths_routable(paths):
        problems.add(f"{key}.upload_paths={paths!r} must be a list of distinct path prefixes "
                     "like \"/api/\" or \"/api/files/\" (letters, digits, . _ ~ -, starting "
                     f"and ending with /, none under {', '.join(NOT_UPLOAD_PATHS)}); for "
                     "large bodies everywhere raise max_body_mb instead")


def _upload_paths_routable(paths: Any) -> bool:
    """A list of distinct prefixes, each a location of its own beside the fixed ones."""
    if not isinstance(paths, list | tuple) or len(set(map(str, paths))) != len(paths):
        return False
    return all(isinstance(path, str) and UPLOAD_PATH_RE.match(path)
               and not path.startswith(NOT_UPLOAD_PATHS) for path in paths)


def check_keepalive(nginx: NginxSettings, problems: Problems) -> None:
    """Kept-alive connections outlive neither their timeout nor an old worker's drain."""
    key = f"{NAMESPACE}:platform.nginx"
    timeout = nginx.keepalive_timeout_seconds
    if not 1 <= timeout <= 300:
        problems.add(f"{key}.keepalive_timeout_seconds={timeout} must be between 1 and 300")
        return
    keep = nginx.keepalive_min_timeout_seconds
    if keep is not None and not 0 <= keep <= timeout:
        problems.add(f"{key}.keepalive_min_timeout_seconds={keep} must be between 0 and "
                     f"keepalive_timeout_seconds={timeout} (a connection is never kept longer "
                     "than its keep-alive timeout); leave it unset to keep every idle "
                     "connection across a reload")
        return
    shutdown = nginx.worker_shutdown_timeout_seconds
    if nginx.reload_keeps_idle_seconds + RELEASE_DRAIN_SECONDS >= shutdown:
        problems.add(f"{key}.worker_shutdown_timeout_seconds="
                     f"{nginx.worker_shutdown_timeout_seconds} must be longer than the "
                     f"{nginx.reload_keeps_idle_seconds} s an old worker keeps idle "
                     f"connections after a reload plus the {RELEASE_DRAIN_SECONDS} s drain, or "
                     "nginx cuts kept-alive connections a client may be using; raise it or "
                     "lower keepalive_min_timeout_seconds")

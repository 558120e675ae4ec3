"""`aiia:platform.nginx`: the one server the internet reaches, for every environment and the
status domain."""

from __future__ import annotations

from dataclasses import dataclass


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
    # longer meet the race every keep-alive server has (a request crossing the close).
    keepalive_timeout_seconds: int = 30
    # For how long after its last response a kept-alive connection survives a reload (nginx
    # keepalive_min_timeout, 1.27.4+). The default, keepalive_timeout_seconds, means a reload
    # closes no idle connection: its next request is answered by the old worker (and the
    # release that served before) with "Connection: close", and the client reconnects to
    # the new one. 0 is nginx's own default: every reload closes idle connections at once,
    # and a client that sends on one at that moment gets a reset or an empty reply.
    keepalive_min_timeout_seconds: int | None = None

    @property
    def reload_keeps_idle_seconds(self) -> int:
        """keepalive_min_timeout in effect: how long an old worker may still take a request."""
        if self.keepalive_min_timeout_seconds is None:
            return self.keepalive_timeout_seconds
        return self.keepalive_min_timeout_seconds

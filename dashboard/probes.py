"""Probing an environment's health endpoint the way a user reaches it: through nginx.

The URL usually points at nginx on this host (``https://127.0.0.1/health/``) with the
environment's domain in the ``Host`` header and as TLS SNI, so the probe exercises the same
server block, certificate and upstream a visitor gets. Certificate verification is off on
purpose: the local stack and a fresh VPS serve self-signed bootstrap certificates, and
expiry is watched separately (certificates.py).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse

from .config import Environment
from .store import ProbeRow

USER_AGENT = "aiia-dashboard-probe/1"


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # noqa: S501 - self-signed local certs; see module doc
    return context


class _SNIHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address (often 127.0.0.1) while presenting ``server_name`` as SNI."""

    def __init__(self, host: str, port: int | None, server_name: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=_insecure_context())
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


def probe(environment: Environment, timeout: float, now: float | None = None) -> ProbeRow:
    """One GET of the health URL: ok when a 2xx arrives within ``timeout``."""
    started = time.monotonic()
    ts = int(now if now is not None else time.time())
    url = urllib.parse.urlsplit(environment.health_url)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    if url.scheme == "https":
        connection: http.client.HTTPConnection = _SNIHTTPSConnection(
            url.hostname or "", url.port, environment.host_header, timeout
        )
    else:
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    try:
        connection.request(
            "GET",
            path,
            headers={
                "Host": environment.host_header,
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
        )
        response = connection.getresponse()
        body = response.read(2048)
    except (OSError, http.client.HTTPException) as error:
        return ProbeRow(
            ts,
            environment.name,
            False,
            None,
            round((time.monotonic() - started) * 1000, 1),
            f"{type(error).__name__}: {error}"[:300],
        )
    finally:
        connection.close()
    latency = round((time.monotonic() - started) * 1000, 1)
    ok = 200 <= response.status < 300
    error = None if ok else f"HTTP {response.status}: {body[:200].decode('utf-8', 'replace')}"
    return ProbeRow(ts, environment.name, ok, response.status, latency, error)

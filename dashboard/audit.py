"""Who signed in to the dashboard, from where, and who tried and failed (review L3).

One line per event on the server's stderr, which the host keeps: the journal on a VPS
(`journalctl -u aiia-dashboard`), the container's log locally (`make logs STACK=local
SERVICE=dashboard`):

    audit: event=login user="alice" client=203.0.113.7
    audit: event=login-failed user="mallory" client=198.51.100.4 reason="unknown user"

A login is written once per operator and client address per session: the first request
the operator's credentials sign in, and again after `session_gap_s` without a request. The
page's polls every few seconds write nothing. Every refused request that carried
credentials is written (nginx lets one address try about once a second).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection

from .auth import Attempt

SESSION_GAP_S = 1800.0  # half an hour without a request: the next one is a new login
USER_SHOWN_CHARS = 64


def client_address(peer: str, real_ip: str | None, trusted_proxies: Collection[str]) -> str:
    """The client's address: nginx's X-Real-IP when the request comes from nginx (a
    `trusted_proxies` address; nginx sets the header to $remote_addr, replacing any the
    client sent), else the peer's own; the peer's too when the header is missing or no
    address (then the line names nginx, which is still the truth about the socket)."""
    try:
        peer = _unmapped(peer)
    except ValueError:
        return "unknown"
    if peer not in trusted_proxies or real_ip is None:
        return peer
    try:
        return _unmapped(real_ip.strip())
    except ValueError:
        return peer


def _unmapped(address: str) -> str:
    """`address` in its canonical form, an IPv4 client of a dual-stack socket
    (::ffff:192.0.2.1) as its IPv4 address; raises ValueError for no address."""
    mapped = ipaddress.ip_address(address)
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped:
        return str(mapped.ipv4_mapped)
    return str(mapped)


def audit_line(event: str, user: str | None, client: str, reason: str = "") -> str:
    """One audit line; the user name as JSON text, so that a name a client made up (quotes,
    newlines, escapes) cannot forge a line or a field."""
    shown = json.dumps((user or "")[:USER_SHOWN_CHARS], ensure_ascii=True)
    line = f"audit: event={event} user={shown} client={client}"
    return line + (f" reason={json.dumps(reason)}" if reason else "")


class LoginAudit:
    """Decides which attempts are written, and writes them."""

    def __init__(
        self,
        write: Callable[[str], None] | None = None,
        session_gap_s: float = SESSION_GAP_S,
        max_sessions: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write or _to_stderr
        self._session_gap_s = session_gap_s
        self._max_sessions = max_sessions
        self._clock = clock
        self._last_seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, attempt: Attempt, client: str) -> None:
        if attempt.user is not None:
            if self._new_session(attempt.user, client):
                self._write(audit_line("login", attempt.user, client))
        elif attempt.reason != "no credentials":
            self._write(audit_line("login-failed", attempt.tried, client, attempt.reason))

    def _new_session(self, user: str, client: str) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last_seen.pop((user, client), None)
            self._last_seen[(user, client)] = now
            while len(self._last_seen) > self._max_sessions:
                self._last_seen.popitem(last=False)
        return last is None or now - last > self._session_gap_s


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()

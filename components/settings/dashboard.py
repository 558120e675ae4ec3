"""`aiia:platform.dashboard`: the status dashboard's server, collector and notifier, and
who may sign in to it.

Standard library only, like the other settings modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from components.settings.checks import NAMESPACE, Problems


@dataclass(frozen=True)
class DashboardSettings:
    memory_mb: int = 32  # the HTTP server (systemd MemoryMax on a VPS)
    # The collector: a timer run on a VPS, resident locally. Measured (bench/setup.py): 16–19
    # MB anonymous at a collection's peak, plus the page cache it reads through and ~2.5 MB
    # for anything run beside it (a `docker exec`'s runc init and command: its health
    # check, an operator's look inside). 24 left a second Python started beside a
    # collection OOM-killed (issue #15).
    collector_memory_mb: int = 32
    # The alert notifier (platform.alerts): a one-shot after each collection on a VPS.
    notifier_memory_mb: int = 32
    port: int = 9100
    user: str = "admin"
    image: str = "aiia-dashboard:local"  # local stack only: the image both containers run
    # The server's uid and gid: the aiia-dashboard account's on a VPS (made with it, and
    # moved to it if it has another), the server container's locally.
    uid: int = 10002


# The dashboard's password alone guards the status site, which the whole internet reaches
# (review L8): long enough that guessing it online is hopeless (NIST SP 800-63B-4 asks at
# least 15 characters of a password that is the only factor).
DASHBOARD_PASSWORD_MIN_LENGTH = 16


def check_dashboard_password(key: str, secret_text: Callable[[str], str | None],
                             problems: Problems) -> None:
    """The password of `key`, read at preview and never kept: long enough."""
    password = secret_text(key)
    if password is not None and len(password) < DASHBOARD_PASSWORD_MIN_LENGTH:
        problems.add(f"{NAMESPACE}:{key} has {len(password)} characters; it "
                     f"alone guards the status site from the internet: at least "
                     f"{DASHBOARD_PASSWORD_MIN_LENGTH}. Set a new one with `openssl rand "
                     f"-base64 24 | pulumi config set -s {problems.stack} --secret "
                     f"{NAMESPACE}:{key}`")

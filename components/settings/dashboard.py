"""`aiia:platform.dashboard`: the status dashboard's server, collector and notifier, and
who may sign in to it.

Standard library only, like the other settings modules."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from components.settings.checks import NAMESPACE, Problems, typed_fields

# An operator's name: in a secret's key (aiia:dashboard_password_<name>), a Basic-auth user
# name and an audit line, so nothing that needs quoting in any of them.
OPERATOR_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,31}$")
MAX_OPERATORS = 20  # each costs a PBKDF2 at preview; a team larger than this wants SSO
KEY = f"{NAMESPACE}:platform.dashboard"


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
    # The one shared account of a stack without operators: this name and
    # aiia:dashboard_password.
    user: str = "admin"
    # Per-operator accounts (review L3), in place of the shared one: each name signs in with
    # its own secret aiia:dashboard_password_<name>, and the server's audit lines name it.
    # Removing a name revokes it at the next `pulumi up` (the server restarts on its config).
    operators: tuple[str, ...] = ()
    # Who reaches the status site at all (nginx's allow/deny, 403 for the rest): addresses
    # and CIDR ranges, IPv4 or IPv6. Empty: the whole internet, as before.
    allow_from: tuple[str, ...] = ()
    image: str = "aiia-dashboard:local"  # local stack only: the image both containers run
    # The server's uid and gid: the aiia-dashboard account's on a VPS (made with it, and
    # moved to it if it has another), the server container's locally.
    uid: int = 10002
    # The collector's account on a VPS, aiia-collector (review L2: not root), the one that
    # may reach the Docker proxy (dashboard/docker_proxy.py), whose limit follows.
    collector_uid: int = 10003
    docker_proxy_memory_mb: int = 16


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


def parse_dashboard(platform_raw: Mapping[str, Any], problems: Problems) -> DashboardSettings:
    """`platform.dashboard`, its operators' names and its allowlist checked."""
    values = platform_raw.get("dashboard") or {}
    if not isinstance(values, Mapping):
        problems.add(f"{KEY} must be an object")
        values = {}
    values = typed_fields(DashboardSettings, values, "platform.dashboard", problems)
    operators = _names(values.pop("operators", ()), problems)
    if operators and "user" in values:
        problems.add(f"{KEY}.user={values['user']!r} names the shared account, which "
                     "operators replace: remove it (each operator signs in with their own "
                     "name)")
    allow_from = _networks(values.pop("allow_from", ()), problems)
    return DashboardSettings(operators=operators, allow_from=allow_from, **values)


def _names(operators: Any, problems: Problems) -> tuple[str, ...]:
    if isinstance(operators, str) or not isinstance(operators, list | tuple):
        problems.add(f"{KEY}.operators={operators!r} must be a list of names, e.g. "
                     "[alice, bob]")
        return ()
    for name in operators:
        if not isinstance(name, str) or not OPERATOR_NAME_RE.match(name):
            problems.add(f"{KEY}.operators: {name!r} must be lower-case letters and digits, "
                         "starting with a letter, at most 32 characters (it is part of the "
                         "secret's key aiia:dashboard_password_<name>)")
    duplicates = sorted({name for name in operators if operators.count(name) > 1}, key=str)
    if duplicates:
        problems.add(f"{KEY}.operators names {', '.join(map(str, duplicates))} more than "
                     "once; list each operator once")
    if len(operators) > MAX_OPERATORS:
        problems.add(f"{KEY}.operators lists {len(operators)} names; at most {MAX_OPERATORS}")
    return tuple(str(name) for name in operators)


def _networks(allow_from: Any, problems: Problems) -> tuple[str, ...]:
    """The allowlist as nginx will read it: each entry a network in its canonical form."""
    if isinstance(allow_from, str) or not isinstance(allow_from, list | tuple):
        problems.add(f"{KEY}.allow_from={allow_from!r} must be a list of addresses or CIDR "
                     "ranges, e.g. [203.0.113.7, 198.51.100.0/24]")
        return ()
    networks = []
    for entry in allow_from:
        try:
            networks.append(str(ipaddress.ip_network(str(entry), strict=True)))
        except ValueError as error:
            problems.add(f"{KEY}.allow_from: {entry!r} is not an address or a CIDR range "
                         f"({error}), e.g. 203.0.113.7, 198.51.100.0/24 or 2001:db8::/48")
    return tuple(networks)


def check_allow_from_apart(allow_from: tuple[str, ...], subnets: dict[str, str],
                           problems: Problems) -> None:
    """No allowlist entry covers one of the platform's own networks (setting → subnet): a
    container there, or a client Docker's proxy hands to nginx from the network's gateway,
    would pass as an operator's address."""
    for entry in allow_from:
        for key, subnet in subnets.items():
            try:
                overlaps = ipaddress.ip_network(entry).overlaps(ipaddress.ip_network(subnet))
            except (TypeError, ValueError):
                continue  # a malformed subnet is its own setting's problem
            if overlaps:
                problems.add(f"{KEY}.allow_from: {entry} covers {NAMESPACE}:{key}={subnet}, "
                             "the platform's own network: its containers (and clients "
                             "Docker's proxy hands to nginx from its gateway) would pass; "
                             "list your own addresses only")


def dashboard_secret_keys(dashboard: DashboardSettings) -> list[str]:
    """The secrets that sign in to the dashboard: one per operator, or the shared one."""
    if dashboard.operators:
        return [f"dashboard_password_{name}" for name in dashboard.operators]
    return ["dashboard_password"]

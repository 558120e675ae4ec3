"""The host's lease: one stack changes the host at a time (issue #28 item 5).

Apart from the Pulumi SDK, so that the deploy job's script renders the same lease
(scripts/host_lease.py) without the program.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.host.templates import render

# How long a host command waits for the other stack's commands to let go of the host (its
# longest: a migration, 10 min a statement). The deploy jobs wait for the host before their
# `pulumi up` (scripts/host-lease.sh), so a command waits this long only when an `up` from
# elsewhere meets one of the other stack.
HOST_LEASE_WAIT_SECONDS = 900


@dataclass(frozen=True)
class HostLease:
    """One stack changes the host at a time (issue #28 item 5): prod and staging share its
    nginx and PostgreSQL, and a staging release's reload or migration must not run beside a
    prod change of them.

    A group lock (templates/host/host-lease.sh.j2): every command of a stack holds
    `<stack>.lock` shared, so one stack's commands still run side by side (Pulumi runs them
    in parallel), and a command of another stack waits, at most `wait_seconds`, until no
    command of another stack holds its own; the entry is decided under `gate.lock`, held for
    that check alone. The deploy job holds its stack's lease for the whole deploy
    (scripts/host-lease.sh), so the other stack waits for all of it, Docker steps included.
    """

    directory: str  # under the host's root, shared by every stack on the host
    stack: str
    wait_seconds: int = HOST_LEASE_WAIT_SECONDS


def host_lease_directory(root_dir: str) -> str:
    return f"{root_dir.rstrip('/')}/state/host-lease"


def under_lease(name: str, script: str, lease: HostLease | None) -> str:
    """`script` (bash) run by `name` once its stack holds the host; as it is without a lease."""
    if lease is None:
        return script
    body = script.removeprefix("#!/usr/bin/env bash\n").rstrip("\n")
    return render("host/host-lease.sh.j2", command=name, stack=lease.stack,
                  directory=lease.directory, wait_seconds=lease.wait_seconds, body=body)

"""What a release needs from the platform, whichever stack owns it.

The owning stack hands over its Platform's outputs directly; any other stack reads the
same keys from the owner through a StackReference. The keys are `PlatformOutputs`' fields,
written once here: the platform fills them, the reader asks for them, and the owner
exports each.

None of them is a secret. A StackReference hands its reader every output of the stack it
names, whatever the reader asks for, so a per-environment secret output would still give
staging's token prod's passwords. An environment's passwords are therefore set in the
config of the stack that releases it (components/settings/releases.py), as well as in the
platform's, which makes the role and the ACL user with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import pulumi


@dataclass(frozen=True)
class PlatformOutputs:
    """The platform's outputs a release reads (each a value or a pulumi Output)."""

    prefix: Any
    network_name: Any
    nginx_container: Any
    pgbouncer_host: Any
    pgbouncer_port: Any
    # PostgreSQL itself, on the data network (network_name): a release's migrations reach it
    # directly, with a lock timeout PgBouncer's transaction mode cannot carry.
    postgres_host: Any
    postgres_port: Any
    redis_host: Any
    redis_port: Any
    root_dir: Any
    # Per environment: domain, port, app_memory_mb, processes_memory_mb, database_name,
    # database_user, redis_user, network (its own: components/platform/networks.py).
    environments: Any
    # How long after a reload nginx's old workers may still pass a request on (its
    # keepalive_min_timeout): a release keeps the previous one running that long.
    nginx_keep_idle_seconds: Any
    # The dashboard's uid: a release refuses to run as it (the server would read its files).
    dashboard_uid: Any
    # Every health check's start_interval on this host's engine ("1s"), or None where the
    # engine cannot take one (components/settings/host.py, health_start_interval).
    health_start_interval: Any
    ready: Any  # true once PgBouncer, Redis and nginx run: a release waits for it to migrate

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in OUTPUT_KEYS}


OUTPUT_KEYS = tuple(field.name for field in fields(PlatformOutputs))


@dataclass(frozen=True)
class PlatformHandle:
    outputs: Mapping[str, Any]

    @staticmethod
    def from_stack(stack_name: str) -> PlatformHandle:
        reference = pulumi.StackReference(f"platform-{stack_name.replace('/', '-')}",
                                          stack_name=stack_name)
        return PlatformHandle({key: reference.get_output(key) for key in OUTPUT_KEYS})

    def output(self, key: str) -> pulumi.Output:
        return pulumi.Output.from_input(self.outputs[key])

    def environment(self, name: str, stack_name: str) -> pulumi.Output:
        """The platform's record of one environment; fails clearly if it does not serve it."""

        def pick(environments: Mapping[str, Any] | None) -> Mapping[str, Any]:
            if not environments or name not in environments:
                known = ", ".join(sorted(environments or {})) or "none"
                raise ValueError(
                    f"aiia:releases.{name}: the platform stack does not serve environment "
                    f"{name!r} (it serves: {known}); add it to aiia:platform.environments "
                    f"there and `pulumi up` that stack first ({stack_name})")
            return environments[name]

        return self.output("environments").apply(pick)

"""What a release needs from the platform, whichever stack owns it.

The owning stack hands over its Platform's outputs directly; any other stack reads the
same keys from the owner through a StackReference (secrets stay secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

OUTPUT_KEYS = ("prefix", "network_name", "nginx_container", "pgbouncer_host", "pgbouncer_port",
               "redis_host", "redis_port", "root_dir", "environments", "database_passwords",
               "redis_passwords", "ready", "nginx_keep_idle_seconds")


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

    def secret(self, key: str, environment: str) -> pulumi.Output:
        return pulumi.Output.secret(self.output(key).apply(lambda values: values[environment]))

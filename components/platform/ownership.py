"""A stack that stops owning the platform while its state still holds it (issue #28 item 3).

`platform.owner: false` on the stack that owns the platform makes `pulumi up` delete every
platform resource the program no longer declares: nginx, PostgreSQL, PgBouncer, Redis, their
networks and the unprotected volumes, before it fails on the protected ones (the database's
volume, the certificates): pulumi/pulumi continues past a protected delete
(`step_executor.go`, `cancelDueToError`) and fails only at the end. So the program refuses
that config at preview: it reads its own stack's last outputs, and a stack whose last update
exported the platform's outputs must keep owning it. The check's output is awaited like
every other before the program ends (the SDK's `wait_for_rpcs` awaits every outstanding
output), so its error fails the preview, and an `up` before any delete.
"""

from __future__ import annotations

import pulumi

# An output only the stack that owns the platform exports (components/platform/outputs.py).
PLATFORM_MARK = "network_name"


def own_stack_name(stack: str) -> str:
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}"


def refuse_dropping_the_platform(stack: str) -> pulumi.Output[None]:
    """Fails the preview when this stack's last update owned the platform."""
    previous = pulumi.StackReference(f"previous-{stack}", stack_name=own_stack_name(stack))

    def check(mark: object) -> None:
        if mark is not None:
            raise ValueError(
                f"aiia:platform.owner=false, but the last update of stack {stack} owns the "
                "platform: `pulumi up` would delete nginx, PostgreSQL, PgBouncer, Redis, their "
                "networks and the Redis and nginx-cache volumes, then fail on the protected "
                "database volume and certificates (an outage, and the cache lost). Keep "
                f"owning it: `pulumi config rm -s {stack} --path aiia:platform.owner`, and "
                "`pulumi up` again. Moving the platform to another stack is a migration of "
                "its own (docs/runbooks.md, \"Which stack owns the platform\").")

    return previous.get_output(PLATFORM_MARK).apply(check)

"""Releases as commits: set `releases.<environment>.release` in a stack file and commit it.

    python3 -m scripts.release set --stack prod --release 2026.11.27-1 [--up]
    python3 -m scripts.release show --stack prod
    python3 -m scripts.release changed --stack prod --since <commit>   # true / false

`--environment` defaults to the stack's name (prod releases prod, staging releases
staging; the local stack carries both). `set` commits only the stack file, with a message
that says what changed from what; `--up` then runs `pulumi up` of the stack. `changed`
tells the release workflow whether a push changed the release (only then does a failure
roll it back). Exit codes: 0 done, 1 pulumi up failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from scripts.stack_file import (
    DeliveryError,
    commit_stack_file,
    refuse_uncommitted,
    release_of,
    stack_path,
    with_release,
)


def pulumi_up(stack: str) -> int:
    """`pulumi up` of the stack, its output shown as it comes."""
    print(f"pulumi up -s {stack}", flush=True)
    return subprocess.run(["pulumi", "up", "-s", stack, "--yes", "--non-interactive"],
                          check=False).returncode


def set_release(stack: str, environment: str, release: str, reason: str = "") -> str:
    """Commit the new release; returns the commit. Refuses a dirty stack file (its other
    changes would ride along unreviewed) and a release that is already the current one."""
    path = stack_path(stack)
    text = path.read_text()
    updated = with_release(text, environment, release)  # a bad value is named first
    refuse_uncommitted(path)
    current = release_of(text, environment, path.name)
    if current == release:
        raise DeliveryError(f"releases.{environment}.release is {release} already")
    message = (f"Release {release} to {environment} (stack {stack}), after {current}\n\n"
               f"{reason or 'Set by scripts/release.py.'}\n"
               f"Rollback: python3 -m scripts.rollback --stack {stack} "
               f"--environment {environment}\n")
    return commit_stack_file(path, updated, message)


def release_at(commit: str, stack: str, environment: str) -> str | None:
    """The release in the stack file at `commit`; None if the file or the release is absent."""
    result = subprocess.run(["git", "show", f"{commit}:Pulumi.{stack}.yaml"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    try:
        return release_of(result.stdout, environment)
    except DeliveryError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("set", "show", "changed"):
        command = commands.add_parser(name)
        command.add_argument("--stack", required=True)
        command.add_argument("--environment", help="default: the stack's name")
        if name == "set":
            command.add_argument("--release", required=True)
            command.add_argument("--reason", default="", help="a line for the commit message")
            command.add_argument("--up", action="store_true", help="then run pulumi up")
        if name == "changed":
            command.add_argument("--since", required=True, help="the commit before the push")
    args = parser.parse_args(argv)
    environment = args.environment or args.stack
    try:
        path = stack_path(args.stack)
        if args.command == "show":
            print(release_of(path.read_text(), environment, path.name))
            return 0
        if args.command == "changed":
            current = release_of(path.read_text(), environment, path.name)
            before = release_at(args.since, args.stack, environment)
            print("true" if before != current else "false")
            return 0
        commit = set_release(args.stack, environment, args.release, args.reason)
        print(f"committed {commit[:12]}: releases.{environment}.release = {args.release} "
              f"in {Path(path).name}")
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.up and pulumi_up(args.stack) != 0:
        print(f"error: pulumi up -s {args.stack} failed; roll back with "
              f"python3 -m scripts.rollback --stack {args.stack}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

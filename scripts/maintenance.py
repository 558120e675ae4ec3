"""Maintenance as a commit: set `releases.<environment>.maintenance` in a stack file, commit it,
and (with --up) apply it — nginx then answers that environment's visitors 503 with
Retry-After and the maintenance page, or serves them again (docs/runbooks.md, "Maintenance").

    python3 -m scripts.maintenance on --stack prod [--environment prod] [--reason …] [--up]
    python3 -m scripts.maintenance off --stack prod [--up]

`--environment` defaults to the stack's name. Exit codes: 0 done, 1 pulumi up failed, 2 bad
input (a dirty stack file, maintenance already so, an environment the file does not have).
"""

from __future__ import annotations

import argparse
import sys

from scripts.release import pulumi_up
from scripts.stack_file import (
    DeliveryError,
    commit_stack_file,
    config_of,
    refuse_uncommitted,
    release_of,
    stack_path,
    value_of,
    with_value,
)


def _current(text: str, source: str, key: str) -> bool:
    try:
        return value_of(config_of(text, source), key) in (True, "true")
    except DeliveryError:  # not set: off
        return False


def set_maintenance(stack: str, environment: str, on: bool, reason: str = "") -> str:
    """Commit the switch; returns the commit."""
    path = stack_path(stack)
    text = path.read_text()
    release_of(text, environment, path.name)  # names the environments there are, if not this
    refuse_uncommitted(path)
    key = f"releases.{environment}.maintenance"
    if _current(text, path.name, key) == on:
        raise DeliveryError(f"{key} is {'on' if on else 'off'} already")
    state = "on" if on else "off"
    message = (f"Maintenance {state} for {environment} (stack {stack})\n\n"
               f"{reason or 'Set by scripts/maintenance.py.'}\n")
    return commit_stack_file(path, with_value(text, key, on), message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", choices=("on", "off"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--environment", help="default: the stack's name")
    parser.add_argument("--reason", default="", help="a line for the commit message")
    parser.add_argument("--up", action="store_true", help="then run pulumi up")
    args = parser.parse_args(argv)
    environment = args.environment or args.stack
    try:
        commit = set_maintenance(args.stack, environment, args.state == "on", args.reason)
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"committed {commit[:12]}: releases.{environment}.maintenance = "
          f"{str(args.state == 'on').lower()}")
    if args.up and pulumi_up(args.stack) != 0:
        print(f"error: pulumi up -s {args.stack} failed: maintenance is committed but not "
              "applied; fix what it says and `make up` again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

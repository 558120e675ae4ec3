"""Rollback: put the previous release back with a revert commit, then `pulumi up`.

    python3 -m scripts.rollback --stack prod [--environment prod] [--no-up]

The release commit is the newest commit that changed `releases.<environment>.release` in
the stack file; the previous release is the value before it. A release commit that
changed only that line (what scripts/release.py makes) is undone with `git revert`; one
that changed more gets a commit that puts back only the release value, so the rest of it
stays. Then `pulumi up` of the stack. Under GitHub Actions the failed and restored
releases and the commit are written to $GITHUB_OUTPUT. Exit codes: 0 rolled back and up
succeeded, 1 pulumi up failed, 2 nothing to roll back or bad input.
"""

from __future__ import annotations

import argparse
import os
import sys

from scripts.release import pulumi_up, release_at
from scripts.stack_file import DeliveryError, git, release_of, stack_path, with_release


def release_commit(stack: str, environment: str) -> tuple[str, str, str]:
    """(commit, its release, the release before it) of the newest release change."""
    path = stack_path(stack)
    current = release_of(path.read_text(), environment, path.name)
    for commit in git("log", "--format=%H", "--", path.name).split():
        released = release_at(commit, stack, environment)
        before = release_at(f"{commit}^", stack, environment)
        if released == before:
            continue
        if released != current:
            raise DeliveryError(f"{path.name} says {current} but the newest release commit "
                                f"{commit[:12]} set {released}: uncommitted change?")
        if before is None:
            raise DeliveryError(f"{commit[:12]} is the first release of {environment}: "
                                "there is no previous release to put back")
        return commit, released, before
    raise DeliveryError(f"no commit changed releases.{environment}.release in {path.name}")


def only_the_release_line(commit: str, stack: str) -> bool:
    numstat = git("show", "--format=", "--numstat", commit).split("\n")
    changes = [line.split("\t") for line in numstat if line.strip()]
    return changes == [["1", "1", f"Pulumi.{stack}.yaml"]]


def roll_back(stack: str, environment: str) -> tuple[str, str, str]:
    """Commit the previous release back; returns (failed release, restored one, commit)."""
    path = stack_path(stack)
    if git("status", "--porcelain", "--", path.name).strip():
        raise DeliveryError(f"{path.name} has uncommitted changes: commit or drop them first")
    commit, failed, previous = release_commit(stack, environment)
    if only_the_release_line(commit, stack):
        git("revert", "--no-edit", commit)
        git("commit", "-q", "--amend", "-m",
            f"Roll back {environment} to {previous}: revert the release of {failed}\n\n"
            f"This reverts commit {commit}.\n")
    else:
        path.write_text(with_release(path.read_text(), environment, previous))
        git("add", "--", path.name)
        git("commit", "-q", "-m",
            f"Roll back {environment} to {previous}: put back the release value of "
            f"{commit[:12]}^\n\nOnly releases.{environment}.release of {commit} is undone; "
            "its other changes stay.\n", "--", path.name)
    restored = release_of(path.read_text(), environment, path.name)
    if restored != previous:
        raise DeliveryError(f"after the rollback commit the release is {restored}, "
                            f"not {previous}")
    return failed, previous, git("rev-parse", "HEAD").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--environment", help="default: the stack's name")
    parser.add_argument("--no-up", action="store_true", help="commit only, no pulumi up")
    args = parser.parse_args(argv)
    environment = args.environment or args.stack
    try:
        failed, previous, commit = roll_back(args.stack, environment)
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"committed {commit[:12]}: {environment} back from {failed} to {previous}")
    if "GITHUB_OUTPUT" in os.environ:
        with open(os.environ["GITHUB_OUTPUT"], "a") as output:
            output.write(f"failed_release={failed}\nrestored_release={previous}\n"
                         f"commit={commit}\n")
    if args.no_up:
        return 0
    if pulumi_up(args.stack) != 0:
        print(f"error: pulumi up -s {args.stack} of the rollback to {previous} failed: "
              "see the incident checklist in docs/runbooks.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

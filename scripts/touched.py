"""Which stacks a change touches, as a JSON list, for the preview workflow's matrix.

    python3 -m scripts.touched --base <commit>      # e.g. ["prod", "staging"]

A stack file touches its own stack; the program (code, templates, the dashboard, the
reference app's contract, the requirements) touches every stack but local; docs, tests
and the workflows alone touch none (their own checks run in the tests workflow).
"""

from __future__ import annotations

import json
import sys

from scripts.stack_file import DeliveryError, git

DEPLOYED_STACKS = ("prod", "staging")
PROGRAM = ("__main__.py", "Pulumi.yaml", "requirements.txt", "components/", "templates/",
           "dashboard/")


def touched_stacks(paths: list[str]) -> list[str]:
    stacks = set()
    for path in paths:
        if path.startswith(PROGRAM):
            stacks.update(DEPLOYED_STACKS)
        for stack in DEPLOYED_STACKS:
            if path == f"Pulumi.{stack}.yaml":
                stacks.add(stack)
    return sorted(stacks)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--base":
        print("usage: python3 -m scripts.touched --base COMMIT", file=sys.stderr)
        return 2
    try:
        paths = git("diff", "--name-only", f"{argv[1]}...HEAD").split()
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(touched_stacks(paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Every stack's resource URNs, pinned: a URN is how Pulumi knows a resource in a user's state.

A type token or a resource name that changes makes `pulumi up` delete the old resource and
create a new one: for a container that is downtime, for a volume it is data. Moving code
must never do that, so each stack's URN list is compared with the committed
`tests/unit/urns/<stack>.txt`. A deliberate rename changes that file in the same commit and
gives the resource `aliases=[...]` with its old name or type, so existing stacks move it
instead of replacing it. After such a change, write the files anew with
`python3 -m tests.unit.test_urns` and review the diff.
"""

from pathlib import Path

import pytest

from tests.harness.program import prod_outputs_for_staging, run_program

PINNED = Path(__file__).parent / "urns"
STACKS = ("prod", "staging", "local")


def declared_urns(stack: str) -> list[str]:
    stack_outputs = ({"eduaiia/aiia/prod": prod_outputs_for_staging()}
                     if stack == "staging" else None)
    run = run_program(stack, stack_outputs=stack_outputs)
    return sorted(resource.urn for resource in run.resources)


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_declares_the_pinned_urns(stack):
    pinned = (PINNED / f"{stack}.txt").read_text().split()
    declared = declared_urns(stack)
    gone = sorted(set(pinned) - set(declared))
    new = sorted(set(declared) - set(pinned))
    assert not gone and not new, (
        f"the {stack} stack's URNs changed; `pulumi up` would delete {gone} and create {new}. "
        "If the rename is deliberate, give the resource aliases=[...] with its old URN and "
        "write the pinned lists anew: python3 -m tests.unit.test_urns")
    assert declared == pinned  # and no URN is declared twice


if __name__ == "__main__":
    for stack in STACKS:
        (PINNED / f"{stack}.txt").write_text("\n".join(declared_urns(stack)) + "\n")
        print(f"wrote {PINNED / stack}.txt")

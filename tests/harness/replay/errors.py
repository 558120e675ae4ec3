"""How a replayed step fails.

- `ReplayError`: the update fails (a step failed, or `pulumi up` would refuse).
- `Interrupted`: the update was killed mid-step (replay.py, pending operations).
- `InitError`: a create that made its resource but failed after it (pulumi's `InitError`);
  the engine keeps the resource, with init errors (replay.py).
- `check_inputs`: an input the replay does not understand fails by name, and the message
  names the file where it would be mapped.
"""

from __future__ import annotations

from tests.harness.program import RecordedResource


class ReplayError(Exception):
    pass


class Interrupted(ReplayError):
    """`pulumi up` killed while a step ran (a second Ctrl-C, a cancelled CI job's SIGKILL)."""


class InitError(Exception):
    """A create that made the resource but failed after (pulumi's `InitError`)."""

    def __init__(self, message: str, real: dict):
        super().__init__(message)
        self.real = real


def check_inputs(resource: RecordedResource, inputs: dict, known: set[str],
                 mapped_in: str) -> None:
    """Fails by name on an input outside `known`; `mapped_in` is the file that maps them."""
    unknown = sorted(set(inputs) - known)
    if unknown:
        raise ReplayError(f"{resource.name} ({resource.type}): input(s) {', '.join(unknown)} "
                          f"not understood by the replay; map them in {mapped_in}")

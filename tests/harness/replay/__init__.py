"""The replay of the Pulumi engine on a real Docker engine (see replay.py)."""

from tests.harness.replay.replay import (
    CONTAINER,
    DOCKER_PROVIDER,
    Replay,
    ReplayError,
    duration_ns,
    go_duration,
    preview,
)

__all__ = ["CONTAINER", "DOCKER_PROVIDER", "Replay", "ReplayError", "duration_ns",
           "go_duration", "preview"]

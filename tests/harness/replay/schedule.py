"""The order and concurrency of an update's steps (pulumi/pulumi
`pkg/resource/deploy/step_executor.go`).

- Steps run concurrently over the dependency graph (`run_graph`): a pool of `--parallel`
  workers, default unbounded in `pkg/cmd/pulumi/operations/up.go`; the language host
  registers a resource only once the resources it depends on have completed, and once its
  parent is registered, which waited for the parent's own dependencies:
  `dependency_graph`. After a failed step no new step starts, the running ones finish, and
  the update fails.
- A Docker provider (`pulumi:providers:docker`) is configured before any resource made
  through it: the SDK's `_prepare_resource` awaits the provider reference, known once the
  provider was registered after its own `depends_on` (here: the host's preflight).
- What is deleted at the end of an update is deleted in reverse dependency order
  (`deletion_graph`): a resource waits for every resource to delete that depends on it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from tests.harness.program import RecordedResource
from tests.harness.replay.errors import ReplayError

DEFAULT_PARALLEL = 16
# The URN of a resource pending deletion after a create-before-delete replacement: its
# own, then this and a number (replay.py, `Replay._condemn`).
REPLACED = "#replaced#"


def dependency_graph(resources: list[RecordedResource],
                     everything: list[RecordedResource] = ()) -> dict[str, set[str]]:
    """urn → the urns (among `resources`) it waits for; fails on a cycle.

    A resource also waits for what its parents waited for (`everything` holds the
    components): the Python SDK registers a resource only once its parent's URN is known
    (`_prepare_resource` awaits `parent.urn`), and a component's URN is known only once its
    own registration, which waited for its `depends_on`, was answered
    (`_resolve_depends_on_urns`, which expands a component to its children: pulumi/pulumi
    #7732). So `HostFile(..., depends_on=[x])` holds back its install command too."""
    by_urn = {resource.urn: resource for resource in resources}
    all_by_urn = {resource.urn: resource for resource in (*everything, *resources)}

    def waits_for(resource: RecordedResource) -> set[str]:
        urns = {d for d in resource.dependencies if d in by_urn}
        if resource.provider in by_urn:
            # `_prepare_resource` awaits the provider reference (its URN and ID), known once
            # the provider was registered, which waited for the provider's own depends_on.
            urns.add(resource.provider)
        parent = all_by_urn.get(resource.parent)
        while parent is not None:
            if parent.urn in by_urn:
                urns.add(parent.urn)
            urns |= {d for d in parent.dependencies if d in by_urn}
            parent = all_by_urn.get(parent.parent)
        return urns

    graph = {resource.urn: waits_for(resource) for resource in resources}
    done: set[str] = set()

    def visit(urn: str, path: tuple[str, ...]) -> None:
        if urn in done:
            return
        if urn in path:
            raise ReplayError(f"dependency cycle through {by_urn[urn].name}")
        for dependency in graph[urn]:
            visit(dependency, (*path, urn))
        done.add(urn)

    for urn in graph:
        visit(urn, ())
    return graph


def deletion_graph(doomed: dict[str, list[str]]) -> dict[str, set[str]]:
    """urn → the urns it waits for, among `doomed` (urn → the urns it depends on): deleting
    in reverse, a resource waits for every doomed resource that depends on it."""
    base = {urn.split(REPLACED)[0]: urn for urn in doomed}
    graph: dict[str, set[str]] = {urn: set() for urn in doomed}
    for urn, dependencies in doomed.items():
        for dependency in dependencies:
            if dependency in base and base[dependency] != urn:
                graph[base[dependency]].add(urn)
    return graph


def run_graph(graph: dict[str, set[str]], step: Callable[[str], None], parallel: int) -> None:
    """Each step once its dependencies succeeded, up to `parallel` at once; after a
    failure no new step starts and the first error is raised once the rest finished."""
    remaining = dict(graph)
    succeeded: set[str] = set()
    errors: list[BaseException] = []
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        while True:
            if not errors:
                ready = [urn for urn, needs in remaining.items() if needs <= succeeded]
                for urn in ready[:max(1, parallel) - len(running)]:
                    del remaining[urn]
                    running[pool.submit(step, urn)] = urn
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                urn = running.pop(future)
                if future.exception() is not None:
                    errors.append(future.exception())
                else:
                    succeeded.add(urn)
    if errors:
        raise errors[0]

"""Benchmark: the gap a replacement of each platform container leaves, under load.

pulumi-docker replaces a container delete-before-create (provider/resources.go marks
docker_container DeleteBeforeReplace), so a change to one of a platform container's
replacing inputs (an image bump, a changed variable or mount) stops it before its successor
exists. This measures how long each one is gone for a client: a paced load of
`GET /healthz/` on prod through nginx (the health endpoint queries PostgreSQL through
PgBouncer and Redis, so every platform service is on the path), while `pulumi up` (the
replay of tests/harness/replay/ on the real engine) bumps that service's image.

    python3 -m bench.restarts                # as root, dockerd up, stand-in images built
    python3 -m bench.restarts --only nginx   # one service

The baseline is the same load in the same run with nothing changing. The image bump maps
to the same stand-in (tests/harness/local_stack.py), so the gap is the stop of the old
container plus the start of the new one to healthy, which is what a real bump costs once
`RemoteImage` has pulled the new image in a step of its own (before the container's).
"""

from __future__ import annotations

import argparse
import copy
import time

from tests.harness.engine import DockerEngine
from tests.harness.load import Load
from tests.harness.local_stack import (
    NEWER_PATCH_RELEASES,
    build_images,
    image_map,
    release_tags,
    remove_everything,
    start_local_stack,
)

SERVICES = tuple(NEWER_PATCH_RELEASES)


def gap(load: Load, since: float) -> tuple[int, float, float | None, float | None]:
    """Failed requests after `since`, and the longest stretch of them with no request
    served in between (the outage a client sees): its length, start and end after `since`."""
    records = sorted((r for r in load.results if r.started >= since), key=lambda r: r.started)
    failed = [record for record in records if not record.ok]
    longest: tuple[float, float, float] = (0.0, 0.0, 0.0)  # length, start, end
    start = None
    for record in records:
        if not record.ok:
            start = record.started if start is None else start
            if record.started - start >= longest[0]:
                longest = (record.started - start, start, record.started)
        else:
            start = None
    if not failed:
        return 0, 0.0, None, None
    return len(failed), longest[0], longest[1] - since, longest[2] - since


def measure(stack, service: str | None, rate: float, seconds: float) -> str:
    load = Load(stack.https_port, stack.domain("prod"), path="/healthz/", rate=rate,
                total=int(rate * seconds), connections=4).start()
    time.sleep(3)
    started = time.monotonic()
    if service:
        config = copy.deepcopy(stack.config)
        images = config["aiia:platform"].setdefault("images", {})
        images[service] = NEWER_PATCH_RELEASES[service]
        stack.replay.image_map = image_map(config)
        stack.up(config)
    up_seconds = time.monotonic() - started
    load.wait(timeout=seconds * 2 + 30)
    load.stop()
    summary = load.summary()
    count, span, first, last = gap(load, started)
    where = f"from +{first:.2f} s to +{last:.2f} s" if count else "-"
    name = f"{service} image bump" if service else "baseline (no change)"
    return (f"  {name:<24} up {up_seconds:5.1f} s  requests {summary.requests:6d}  "
            f"failed {count:5d}  retries {summary.retries:3d}  longest outage {span:5.2f} s "
            f"({where}); by kind: "
            + (", ".join(f"{kind} {n}" for kind, n in sorted(summary.failure_kinds.items()))
               or "none"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=SERVICES, action="append")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=60,
                        help="load duration per measurement (it outlasts the update)")
    args = parser.parse_args()
    engine = DockerEngine()
    build_images()
    stack = start_local_stack(engine, release_tags(engine))
    try:
        print(f"platform container replacement under load: GET /healthz/ on prod through "
              f"nginx at {args.rate:g} r/s over 4 keep-alive connections, "
              f"{args.seconds:g} s per run; replay on the real engine")
        print(measure(stack, None, args.rate, args.seconds), flush=True)
        for service in args.only or SERVICES:
            print(measure(stack, service, args.rate, args.seconds), flush=True)
            time.sleep(5)
    finally:
        remove_everything(engine, stack.prefix, stack.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

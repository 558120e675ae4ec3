"""Stress: stand the `local` stack up and tear it down N times in a row; count what failed.

Not a test: it prints, per run, whether the set-up succeeded, how long it took and, when it
failed, why (the replay's error, which carries the failing container's health checks:
State.Health.Log). Then, for every container with a health check, what its checks cost:
the slowest check seen, how many checks failed, and the container's peak memory against
its limit — the evidence for issue #15 (the dashboard collector turning unhealthy).

    python3 -m bench.setup [--runs 10] [--hold 40]

As root, with dockerd up and the stand-in images built (tests/images/build-standins.sh).
Each run stands up a stack of its own (tests/harness/local_stack.py), keeps it up --hold
seconds (so a health check that fails only after the gate, on the collector's next
collection, shows too), reads every container's health log and memory, and removes it,
also on error or Ctrl-C. Sends no traffic beyond the containers' own health checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from tests.harness.engine import DockerEngine
from tests.harness.local_stack import (
    build_images,
    release_tags,
    remove_everything,
    start_local_stack,
)


@dataclass
class HealthSeen:
    """What one container's health checks did over the runs."""

    checks: int = 0
    failed: int = 0
    slowest_ms: float = 0.0
    peak_memory_mb: float = 0.0
    limit_mb: float = 0.0
    outputs: Counter = field(default_factory=Counter)
    counted: set = field(default_factory=set)  # (container, start) of the checks counted


def _timestamp(value: str) -> float:
    # Docker writes RFC 3339 with nanoseconds; Python takes microseconds.
    head, _, rest = value.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6] or "0"
    return datetime.fromisoformat(f"{head}.{fraction}+00:00").timestamp()


def container_memory_mb(engine: DockerEngine, container_id: str) -> tuple[float, float]:
    """(peak or current usage, limit) in MB, from the engine's one-shot stats."""
    stats = engine.request("GET", f"/containers/{container_id}/stats?stream=0")
    memory = stats.get("memory_stats", {})
    usage = memory.get("max_usage") or memory.get("usage") or 0
    return usage / 2**20, (memory.get("limit") or 0) / 2**20


def read_health(engine: DockerEngine, prefix: str, seen: dict[str, HealthSeen]) -> None:
    for summary in engine.request("GET", "/containers/json?all=1"):
        name = summary["Names"][0].lstrip("/")
        if not name.startswith(prefix):
            continue
        container = engine.container(name) or {}
        log = (container.get("State", {}).get("Health") or {}).get("Log") or []
        if not log:
            continue
        # Release containers carry their release and generation: count them per service.
        service = name[len(prefix) + 1:].split("-release")[0]
        entry = seen.setdefault(service, HealthSeen())
        for check in log:
            if (name, check["Start"]) in entry.counted:
                continue  # Docker keeps the last five checks: each is read several times
            entry.counted.add((name, check["Start"]))
            entry.checks += 1
            duration = (_timestamp(check["End"]) - _timestamp(check["Start"])) * 1000
            entry.slowest_ms = max(entry.slowest_ms, duration)
            if check.get("ExitCode") != 0:
                entry.failed += 1
                entry.outputs[(check.get("Output") or "").strip()[-160:] or "(no output)"] += 1
        usage, limit = container_memory_mb(engine, summary["Id"])
        entry.peak_memory_mb = max(entry.peak_memory_mb, usage)
        entry.limit_mb = limit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hold", type=float, default=40.0,
                        help="seconds each stack stays up after its set-up")
    args = parser.parse_args()

    engine = DockerEngine()
    build_images()
    releases = release_tags(engine)
    failures: list[str] = []
    durations: list[float] = []
    seen: dict[str, HealthSeen] = {}
    for run in range(1, args.runs + 1):
        started = time.monotonic()
        try:
            stack = start_local_stack(engine, releases)
        except Exception as error:  # noqa: BLE001 - a failed set-up is what we count
            failures.append(str(error))
            print(f"run {run:2}: FAILED after {time.monotonic() - started:.0f} s: {error}",
                  flush=True)
            continue
        durations.append(time.monotonic() - started)
        try:
            until = time.monotonic() + args.hold
            read_health(engine, stack.prefix, seen)  # the checks of the set-up itself
            while time.monotonic() < until:
                time.sleep(min(15.0, max(0.0, until - time.monotonic())))
                read_health(engine, stack.prefix, seen)
            unhealthy = [
                name for name in (c["Names"][0].lstrip("/")
                                  for c in engine.request("GET", "/containers/json"))
                if name.startswith(stack.prefix)
                and (engine.container(name) or {}).get("State", {}).get("Health", {})
                .get("Status") == "unhealthy"
            ]
            if unhealthy:
                failures.append(f"unhealthy after {args.hold:.0f} s: {', '.join(unhealthy)}")
            print(f"run {run:2}: up in {durations[-1]:.0f} s"
                  + (f", then unhealthy: {', '.join(unhealthy)}" if unhealthy else ""),
                  flush=True)
        finally:
            remove_everything(engine, stack.prefix, stack.root)

    print(f"\n{args.runs} set-ups, {len(failures)} failed"
          + (f"; set-up time {min(durations):.0f}–{max(durations):.0f} s" if durations else ""))
    for reason, count in Counter(failures).items():
        print(f"  {count} × {reason}")
    print("\nhealth checks per service (over every run):")
    print(f"  {'service':28} {'checks':>6} {'failed':>6} {'slowest':>9} {'peak memory':>16}")
    for service, entry in sorted(seen.items()):
        print(f"  {service:28} {entry.checks:6} {entry.failed:6} {entry.slowest_ms:7.0f}ms "
              f"{entry.peak_memory_mb:6.1f}/{entry.limit_mb:.0f} MB")
        for output, count in entry.outputs.items():
            print(f"      {count} × {json.dumps(output)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

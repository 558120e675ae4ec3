"""Benchmark: a release A → B and a rollback B → A of prod, under load, through nginx.

Not a test: it prints numbers and the conditions they were measured under.

    python3 -m bench.release [--rate 150] [--requests 10000] [--connections 8]

As root, with dockerd up and the stand-in images built (tests/images/build-standins.sh);
the app images are built here (tests/e2e/build-images.sh, a no-op when up to date). It
stands up a `local` stack of its own on the Docker engine (tests/harness/local_stack.py,
the replay of what the program declares; production goes through Pulumi), and removes it
at the end, also on error or Ctrl-C.

For each of the release and the rollback, a bounded load of `GET /` from 127.0.0.1 runs
through nginx on the prod domain (HTTPS, keep-alive, paced at --rate, at least --requests
requests, see tests/harness/load.py) from --before seconds before `pulumi up` until
--after seconds after it, and the program's steps are timestamped as the replay runs them.
It prints, per phase:

- requests, failures (non-2xx or connection errors, by kind), retries (a reused keep-alive
  connection found closed before any response byte, retried once like a browser does),
- p50 / p99 latency per window of the load, cut at the program's steps: before `pulumi
  up` (the baseline of the same run), while the new release migrates and starts, ±1 s
  around the switch step, during the switch (from the upstream switch until the old
  container is removed: the watch) and after it,
- the time from "new container healthy" (its create step done: Pulumi waits for healthy)
  to "first request served by it" (the first response carrying the new X-Release),
- total release time (`pulumi up`), and the last response of the old release,
- peak memory of all the stack's containers (docker stats: usage − inactive file cache,
  sampled every second) against the host budget of the stack's settings.

Evidence of what happened, from the run itself: nginx's worker generations (host /proc:
when a reload's new worker started and the old one began shutting down and exited), the
engine's events for the stack's containers (kill, die, health), and, when requests fail,
what nginx logged then (error log, 5xx/499 lines of the access log).

`--watch-seconds 0` measures the switch without the post-switch watch (the previous release
is stopped right after the switch), which shows whether the switch itself is safe.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import http.client
import json
import os
import platform
import re
import socket
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from components.names import release_container_prefix
from components.settings import parse_settings
from components.settings.budget import MemoryBudget
from tests.harness.engine import DockerEngine
from tests.harness.load import Load, Summary
from tests.harness.local_stack import (
    LocalStack,
    build_images,
    release_tags,
    remove_everything,
    start_local_stack,
)

CONTAINER_TYPE = "docker:index/container:Container"
ENVIRONMENT = "prod"


# ---------------------------------------------------------------------- the program's steps


@dataclass
class Step:
    at: float  # monotonic time the replay started the step
    action: str  # create / update / delete / replace
    name: str  # the Pulumi resource name
    line: str
    ended: float | None = None  # when the next step started (or the update ended)


class Timeline:
    """Timestamps the replay's log lines ("create <resource>", "update …", "delete …")."""

    def __init__(self, quiet: bool = False):
        self.steps: list[Step] = []
        self.origin = time.monotonic()
        self.quiet = quiet
        self.lock = threading.Lock()

    def log(self, line: str) -> None:
        now = time.monotonic()
        action, _, rest = line.partition(" ")
        name = rest.split(":", 1)[0].strip()
        with self.lock:
            if self.steps and self.steps[-1].ended is None:
                self.steps[-1].ended = now
            self.steps.append(Step(now, action, name, line))
        if not self.quiet:
            print(f"  [{now - self.origin:7.2f} s] {line}", flush=True)

    def close_last(self, at: float) -> None:
        with self.lock:
            if self.steps and self.steps[-1].ended is None:
                self.steps[-1].ended = at

    def between(self, start: float, end: float) -> list[Step]:
        return [step for step in self.steps if start <= step.at <= end]


# ---------------------------------------------------------------------- memory


@dataclass
class MemorySample:
    at: float
    total_mb: float
    by_container: dict[str, float]


class MemorySampler:
    """Sums the memory of every container named `<prefix>-*` once a second, as `docker
    stats` counts it (cgroup usage minus inactive file cache)."""

    def __init__(self, engine: DockerEngine, prefix: str, interval: float = 1.0):
        self.engine, self.prefix, self.interval = engine, prefix, interval
        self.samples: list[MemorySample] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def sample(self) -> MemorySample:
        names = {container["Id"]: container["Names"][0].lstrip("/")
                 for container in self.engine.request("GET", "/containers/json")}
        mine = {cid: name for cid, name in names.items() if name.startswith(f"{self.prefix}-")}
        # One stats request takes about a second on this engine: ask for all at once.
        with ThreadPoolExecutor(max_workers=max(1, len(mine))) as pool:
            usages = dict(zip(mine.values(), pool.map(self._usage_mb, mine), strict=True))
        by_container = {name: usage for name, usage in usages.items() if usage is not None}
        return MemorySample(time.monotonic(), sum(by_container.values()), by_container)

    def _usage_mb(self, container_id: str) -> float | None:
        stats = self.engine.request(
            "GET", f"/containers/{container_id}/stats?stream=false&one-shot=true",
            ok=(200, 404, 409), timeout=10)
        memory = (stats.get("memory_stats") or {}) if isinstance(stats, dict) else {}
        if memory.get("usage") is None:
            return None  # gone, or not running
        details = memory.get("stats") or {}
        inactive = details.get("total_inactive_file", details.get("inactive_file", 0))
        return (memory["usage"] - inactive) / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except Exception:  # a container removed between the list and its stats
                self.errors += 1
            self._stop.wait(self.interval)

    def peak(self, start: float | None = None, end: float | None = None) -> MemorySample | None:
        chosen = [s for s in self.samples
                  if (start is None or s.at >= start) and (end is None or s.at <= end)]
        return max(chosen, key=lambda s: s.total_mb) if chosen else None


# ---------------------------------------------------------------------- nginx's workers


@dataclass
class WorkerEvent:
    at: float
    pid: int
    state: str  # "worker process", "worker process is shutting down", "exited"


class NginxWorkers:
    """Watches the nginx master's children from the host's /proc every 10 ms: when each
    worker appeared, began shutting down (nginx retitles it) and exited. A reload's real
    timeline, which `nginx -s reload` (it only signals the master) does not wait for."""

    def __init__(self, master_pid: int, interval: float = 0.01):
        self.master_pid, self.interval = master_pid, interval
        self.events: list[WorkerEvent] = []
        self._titles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nginx-workers", daemon=True)

    def start(self) -> NginxWorkers:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _children(self) -> dict[int, str]:
        path = Path(f"/proc/{self.master_pid}/task/{self.master_pid}/children")
        titles = {}
        for pid in path.read_text().split():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            title = title.decode(errors="replace").strip().removeprefix("nginx: ")
            if title:  # an exiting process has no command line left: it is gone
                titles[int(pid)] = title
        return titles

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                titles = self._children()
            except OSError:
                return  # nginx is gone
            now = time.monotonic()
            for pid, title in titles.items():
                # A fresh fork still carries the master's title, an exiting worker none:
                # only the titles nginx gives its workers are states worth reporting.
                if self._titles.get(pid) != title and title.startswith("worker process"):
                    self.events.append(WorkerEvent(now, pid, title))
            for pid in set(self._titles) - set(titles):
                if self._titles[pid].startswith("worker process"):
                    self.events.append(WorkerEvent(now, pid, "exited"))
            self._titles = titles
            self._stop.wait(self.interval)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def between(self, start: float, end: float) -> list[WorkerEvent]:
        return [event for event in self.events if start <= event.at <= end]


# ---------------------------------------------------------------------- engine events


@dataclass
class EngineEvent:
    at: float  # monotonic time it arrived (the stream is live)
    container: str
    action: str  # start, die, kill, oom, stop, health_status: healthy, …
    detail: str


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=None)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


class EngineEvents:
    """The engine's live event stream for the stack's containers (`docker events`): when a
    container started, became healthy, was killed or died, and with which exit code. The
    engine keeps only its last 256 events, so they are recorded as they come."""

    def __init__(self, engine: DockerEngine, prefix: str):
        self.path, self.prefix = engine.path, prefix
        self.events: list[EngineEvent] = []
        self._connection = _UnixHTTPConnection(self.path)
        self._thread = threading.Thread(target=self._run, name="engine-events", daemon=True)

    def start(self) -> EngineEvents:
        filters = urllib.parse.quote(json.dumps({"type": ["container"]}))
        self._connection.request("GET", f"/events?filters={filters}")
        self._response = self._connection.getresponse()
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self._connection.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._connection.close()

    def _run(self) -> None:
        while True:
            try:
                line = self._response.readline()
            except Exception:  # the stream ended: stop() shut the socket down
                return
            if not line:
                return
            try:
                event = json.loads(line)
            except ValueError:
                continue
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            name, action = attributes.get("name", ""), event.get("Action", "")
            if not name.startswith(f"{self.prefix}-") or action.startswith("exec_"):
                continue
            detail = ", ".join(f"{key} {attributes[key]}" for key in ("exitCode", "signal")
                               if key in attributes)
            self.events.append(EngineEvent(time.monotonic(), name, action, detail))

    def between(self, start: float, end: float) -> list[EngineEvent]:
        return [event for event in self.events if start <= event.at <= end]

    def healthy(self, container: str, after: float) -> float | None:
        return next((event.at for event in self.events if event.container == container
                     and event.action == "health_status: healthy" and event.at >= after), None)


# ---------------------------------------------------------------------- one switch


@dataclass
class SwitchResult:
    label: str
    source: str
    target: str
    load: Load
    up_started: float
    up_ended: float
    error: BaseException | None
    steps: list[Step]
    up_started_utc: str  # to match other logs (nginx's, the engine's) by wall-clock time
    healthy_at: float | None = None  # the new container's create step finished
    healthy_event_at: float | None = None  # the engine reported it healthy
    switch_at: float | None = None  # the upstream switch step started
    switch_ended: float | None = None
    old_removed_at: float | None = None  # the old container's delete step finished
    windows: dict[str, Summary] = field(default_factory=dict)


def release_resource(stack: LocalStack, release: str):
    """The prod container resource of `release` in the stack's last run (its container name
    ends in the generation of its inputs)."""
    wanted = release_container_prefix(stack.prefix, ENVIRONMENT, release)
    for resource in stack.run.of_type(CONTAINER_TYPE):
        if str(resource.plain.get("name", "")).startswith(wanted):
            return resource
    return None


def container_resource(stack: LocalStack, release: str) -> str | None:
    """The Pulumi resource name of the prod container of `release` in the stack's last run."""
    resource = release_resource(stack, release)
    return resource.name if resource else None


def precise_ends(steps: list[Step], events: list) -> None:
    """Where the replay records (action, name, started, ended) itself, take its end times
    (a step's end is otherwise the start of the next one)."""
    for step in steps:
        for event in events:
            if (isinstance(event, tuple) and len(event) == 4 and event[0] == step.action
                    and event[1] == step.name and abs(event[2] - step.at) < 0.05):
                step.ended = event[3]


def run_switch(stack: LocalStack, timeline: Timeline, events: EngineEvents, label: str,
               source: str, target: str, args: argparse.Namespace) -> SwitchResult:
    old_resource = container_resource(stack, source)
    domain = stack.domain(ENVIRONMENT)
    # Bounded in requests and time, with room for a release of up to three minutes; it is
    # stopped once the release is over, --after seconds have passed and --requests were sent.
    total = max(args.requests * 2, int(args.rate * (args.before + 180 + args.after)))
    load = Load(stack.https_port, domain, "/", rate=args.rate, total=total,
                connections=args.connections, timeout=args.timeout,
                max_seconds=total / args.rate + args.timeout)
    print(f"\n== {label}: {source} → {target} under load "
          f"({args.rate:.0f} r/s, ≥{args.requests} requests, {args.connections} connections)",
          flush=True)
    load.start()
    time.sleep(args.before)
    up_started = time.monotonic()
    up_started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    error: BaseException | None = None
    try:
        stack.up(stack.with_release(ENVIRONMENT, target))
    except Exception as caught:  # a failed update is a result too; the load goes on
        error = caught
        print(f"  pulumi up failed: {str(caught)[:2000]}", flush=True)
    up_ended = time.monotonic()
    timeline.close_last(up_ended)
    while load.running and (time.monotonic() < up_ended + args.after
                            or len(load.results) < args.requests):
        time.sleep(0.2)
    if not load.running:
        print(f"  WARNING: the load ended ({len(load.results)} requests) before "
              f"{args.after:.0f} s after the release: the 'after' window is short", flush=True)
    load.stop()
    result = SwitchResult(label, source, target, load, up_started, up_ended, error,
                          timeline.between(up_started, up_ended), up_started_utc)
    precise_ends(result.steps, stack.replay.events)
    new_resource = container_resource(stack, target)
    for step in result.steps:
        if step.action == "create" and step.name == new_resource:
            result.healthy_at = step.ended
        elif step.action == "delete" and step.name == old_resource:
            result.old_removed_at = step.ended
    # The switch: the first step after the new container is healthy that touches the
    # environment's upstream (the program's switch), else simply the next step.
    after_healthy = [s for s in result.steps
                     if result.healthy_at is not None and s.at >= result.healthy_at]
    switch = next((s for s in after_healthy if "upstream" in s.name), None) or next(
        iter(after_healthy), None)
    if switch is not None:
        result.switch_at, result.switch_ended = switch.at, switch.ended
    result.healthy_event_at = events.healthy(
        release_resource(stack, target).plain["name"], up_started)
    start = load.started_at or up_started
    end = max(record.started for record in load.results) + 1e-6 if load.results else up_ended
    switch_at = result.switch_at or up_started
    drained = result.old_removed_at or up_ended
    result.windows = {
        "before the release (steady)": load.summary(start, up_started),
        "release, before the switch": load.summary(up_started, switch_at),
        "around the switch step (±1 s)": load.summary(
            switch_at - 1, (result.switch_ended or switch_at) + 1),
        "during the switch (to old removed)": load.summary(switch_at, drained),
        "after the switch": load.summary(drained, end),
        "whole run": load.summary(),
    }
    return result


# ---------------------------------------------------------------------- report


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_switch(result: SwitchResult, memory: MemorySampler, budget_mb: int,
                 workers: NginxWorkers | None, events: EngineEvents) -> None:
    print(f"\n-- {result.label}: {result.source} → {result.target}"
          f"{'  (pulumi up FAILED)' if result.error else ''}")
    print_windows(result)
    print_load(result)
    print_new_container(result)
    print_handover(result)
    peak = memory.peak(result.up_started, result.up_ended)
    if peak:
        print(f"  peak memory during the release: {peak.total_mb:.0f} MB of the "
              f"{budget_mb} MB host at +{peak.at - result.up_started:.1f} s")
    print("  steps (seconds after pulumi up started):")
    for step in result.steps:
        took = f"{(step.ended or result.up_ended) - step.at:6.2f} s"
        print(f"    +{step.at - result.up_started:6.2f}  {took}  {step.line}")
    if workers is not None:
        print_workers(result, workers)
    print_engine_events(result, events)


def print_windows(result: SwitchResult) -> None:
    """The load's numbers per window, and its failures by kind."""
    print(f"  {'window':<36} {'seconds':>7} {'requests':>8} {'failed':>6} {'retries':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  releases")
    for name, summary in result.windows.items():
        releases = " → ".join(f"{s.release}×{s.count}" for s in summary.releases) or "-"
        print(f"  {name:<36} {summary.duration:7.1f} {summary.requests:8d} "
              f"{summary.failures:6d} {summary.retries:7d} {ms(summary.p50_ms):>7} "
              f"{ms(summary.p99_ms):>7} {ms(summary.max_ms):>7}  {releases}")
    whole = result.windows["whole run"]
    if whole.failure_kinds:
        print("  failures by kind: " + ", ".join(
            f"{kind}: {count}" for kind, count in sorted(whole.failure_kinds.items())))


def print_load(result: SwitchResult) -> None:
    """What the load offered and cost, and how long the release took."""
    load, whole = result.load, result.windows["whole run"]
    print(f"  load: {whole.requests} requests at {whole.rate:.1f} r/s offered over "
          f"{whole.duration:.1f} s, {load.late} started >100 ms late, generator CPU "
          f"{load.cpu_seconds:.1f} s ({100 * load.cpu_seconds / max(whole.duration, 1e-9):.0f} "
          f"% of one core, ~{1000 * load.cpu_seconds / max(whole.requests, 1):.2f} ms/request)")
    print(f"  total release time (pulumi up): {result.up_ended - result.up_started:.1f} s, "
          f"started at {result.up_started_utc}")


def print_new_container(result: SwitchResult) -> None:
    """When the new container became healthy and the switch step ran."""
    if result.healthy_at is not None:
        print(f"  new container healthy at +{result.healthy_at - result.up_started:.1f} s "
              "(its create step done)")
    if result.switch_at is not None:
        print(f"  switch step at +{result.switch_at - result.up_started:.1f} s, "
              f"took {((result.switch_ended or result.up_ended) - result.switch_at):.2f} s")
    if result.healthy_event_at is not None:
        print(f"  engine reported it healthy at +{result.healthy_event_at - result.up_started:.2f}"
              " s (health_status event)")


def print_handover(result: SwitchResult) -> None:
    """The traffic's move from the old release to the new: the new one's first response,
    the old one's last, and the old container's removal."""
    seen = {s.release: s for s in result.windows["whole run"].releases}
    new, old = seen.get(result.target), seen.get(result.source)
    if new and result.healthy_at is not None:
        print(f"  healthy → first request served by {result.target}: "
              f"{new.first - result.healthy_at:.2f} s after its create step ended"
              + (f", {new.first - result.healthy_event_at:.2f} s after the engine's "
                 "health_status event" if result.healthy_event_at is not None else ""))
    elif not new:
        print(f"  no request was served by {result.target}")
    if old and result.switch_ended is not None:
        print(f"  last response from {result.source}: "
              f"{old.last - result.switch_ended:+.2f} s after the switch step ended")
    if result.old_removed_at is not None:
        print(f"  old container removed at +{result.old_removed_at - result.up_started:.1f} s")


def print_workers(result: SwitchResult, workers: NginxWorkers) -> None:
    changes = workers.between(result.up_started, result.up_ended + 5)
    print("  nginx workers (host /proc, seconds after pulumi up started):")
    for change in changes:
        print(f"    +{change.at - result.up_started:7.3f}  pid {change.pid}: {change.state}")
    if not changes:
        print("    no change seen" + ("" if workers.running else
                                      " (the watch lost nginx's master: it restarted)"))


def print_engine_events(result: SwitchResult, events: EngineEvents) -> None:
    load_start = result.load.started_at or result.up_started
    load_end = max((r.finished for r in result.load.results), default=result.up_ended)
    print("  engine events of the stack's containers during the load (seconds after pulumi "
          "up started):")
    for event in events.between(load_start, load_end):
        print(f"    +{event.at - result.up_started:7.3f}  {event.container}: {event.action}"
              f"{' (' + event.detail + ')' if event.detail else ''}")


def failure_timeline(result: SwitchResult) -> None:
    failed = [r for r in result.load.results if not r.ok]
    if not failed:
        return
    print(f"  failed requests ({len(failed)}), seconds after pulumi up started:")
    for record in failed[:40]:
        print(f"    +{record.started - result.up_started:7.3f} → "
              f"+{record.finished - result.up_started:7.3f}  {record.outcome}"
              f"{'  (after a retry)' if record.retried else ''}")


def nginx_evidence(stack: LocalStack, result: SwitchResult) -> None:
    """nginx's own account of the failures: error log lines and 5xx/499 access log lines."""
    logs = stack.root / "logs" / "nginx"
    error_log = logs / "error.log"
    if error_log.exists():
        lines = [line for line in error_log.read_text(errors="replace").splitlines()
                 if re.search(r"\[(error|crit|alert|emerg)\]", line)]
        print(f"  nginx error.log: {len(lines)} error-level lines in all; last 15:")
        for line in lines[-15:]:
            print(f"    {line[:300]}")
    access_log = logs / "access.log"
    if access_log.exists():
        bad = []
        for line in access_log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("env") == ENVIRONMENT and (entry.get("status", 0) >= 500
                                                    or entry.get("status") == 499):
                bad.append(entry)
        print(f"  nginx access.log: {len(bad)} prod lines with status ≥ 500 or 499; last 10:")
        for entry in bad[-10:]:
            print(f"    {json.dumps(entry)[:300]}")


def conditions(engine: DockerEngine, stack: LocalStack, args: argparse.Namespace,
               releases: dict[str, str]) -> None:
    cpu = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        ram_mb = int(meminfo.readline().split()[1]) // 1024
    version = engine.request("GET", "/version")
    platform_config = stack.config["aiia:platform"]
    app_memory = platform_config["environments"][ENVIRONMENT].get("app_memory_mb")
    print("\n== conditions")
    print(f"  machine: {os.cpu_count()} cores ({cpu}), {ram_mb} MB RAM, "
          f"Linux {platform.release()}, Docker {version.get('Version')} "
          f"(API {version.get('ApiVersion')}), Python {platform.python_version()}")
    print(f"  load: GET / on https://{stack.domain(ENVIRONMENT)}:{stack.https_port} "
          f"(127.0.0.1, SNI), {args.rate:.0f} r/s paced over {args.connections} keep-alive "
          f"connections, ≥{args.requests} requests per phase, {args.before:.0f} s before "
          f"pulumi up, ≥{args.after:.0f} s after it, {args.timeout:.0f} s request timeout")
    for key in ("a", "b"):
        reference = f"{stack.config['aiia:releases'][ENVIRONMENT]['image']}:{releases[key]}"
        image = engine.image(reference) or {}
        print(f"  release {key.upper()}: {reference} ({(image.get('Id') or '?')[:19]})")
    others = [c["Names"][0].lstrip("/") for c in engine.request("GET", "/containers/json")
              if not c["Names"][0].lstrip("/").startswith(f"{stack.prefix}-")]
    load1, load5, _ = os.getloadavg()
    print(f"  host load average {load1:.2f} (1 min) {load5:.2f} (5 min); "
          f"{len(others)} other containers running on the engine")
    release = stack.config["aiia:releases"][ENVIRONMENT]
    print(f"  stack: prefix {stack.prefix}, both environments up (prod and staging), "
          f"prod app container limit {app_memory} MB, prod watch_seconds "
          f"{release.get('watch_seconds', 'default')}, stop_grace_seconds "
          f"{release.get('stop_grace_seconds', 'default')}; replay of the program "
          "(tests/harness/replay/) on the real engine")


def budget_of(stack: LocalStack):
    raw = {key.split(":", 1)[1]: value for key, value in copy.deepcopy(stack.config).items()}
    secrets = {key.split(":", 1)[1]: value for key, value in stack.secrets.items()}
    return parse_settings("local", raw, secrets.get).budget


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=150, help="requests per second")
    parser.add_argument("--requests", type=int, default=10_000,
                        help="at least this many requests per phase (release, rollback)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10, help="per request, seconds")
    parser.add_argument("--before", type=float, default=15,
                        help="seconds of load before pulumi up (the baseline)")
    parser.add_argument("--after", type=float, default=15,
                        help="seconds of load at least after pulumi up ends")
    parser.add_argument("--watch-seconds", type=int, default=None,
                        help="override prod's releases.prod.watch_seconds (the stack's "
                             "default otherwise)")
    parser.add_argument("--no-build", action="store_true",
                        help="skip tests/e2e/build-images.sh")
    parser.add_argument("--quiet", action="store_true", help="do not echo the replay's steps")
    return parser.parse_args()


@dataclass
class Started:
    """What a run has started so far: stopped and removed at the end, also on error or
    Ctrl-C (None: not started yet)."""

    stack: LocalStack | None = None
    memory: MemorySampler | None = None
    workers: NginxWorkers | None = None
    events: EngineEvents | None = None

    def stop(self, engine: DockerEngine) -> None:
        if self.memory is not None:
            self.memory.stop()
        if self.workers is not None:
            self.workers.stop()
        if self.events is not None:
            self.events.stop()
        if self.stack is not None:
            print(f"\n== removing the stack {self.stack.prefix}", flush=True)
            remove_everything(engine, self.stack.prefix, self.stack.root)


def main() -> int:
    args = parse_args()
    engine = DockerEngine()
    engine.request("GET", "/version")
    if not args.no_build:
        build_images()
    releases = release_tags(engine)
    timeline = Timeline(quiet=args.quiet)
    started = Started()
    try:
        return bench(engine, args, releases, timeline, started)
    finally:
        started.stop(engine)


def bench(engine: DockerEngine, args: argparse.Namespace, releases: dict[str, str],
          timeline: Timeline, started: Started) -> int:
    """Stand up the stack, release and roll back under load, and report; what it starts
    goes into `started`."""
    began = time.monotonic()
    print("== standing up the local stack", flush=True)
    stack = started.stack = start_local_stack(engine, releases)
    print(f"  up in {time.monotonic() - began:.0f} s (prefix {stack.prefix})", flush=True)
    stack.replay.log = timeline.log
    if args.watch_seconds is not None:
        stack.config["aiia:releases"][ENVIRONMENT]["watch_seconds"] = args.watch_seconds
    memory = started.memory = MemorySampler(engine, stack.prefix).start()
    events = started.events = EngineEvents(engine, stack.prefix).start()
    nginx = engine.container(stack.container("nginx")) or {}
    workers = started.workers = NginxWorkers(nginx["State"]["Pid"]).start() if nginx else None
    budget = budget_of(stack)
    conditions(engine, stack, args, releases)
    warm = stack.get(ENVIRONMENT, "/")
    print(f"  GET / before the load: {warm.status}, X-Release "
          f"{warm.headers.get('x-release')}")
    results = [
        run_switch(stack, timeline, events, "release", releases["a"], releases["b"], args),
        run_switch(stack, timeline, events, "rollback", releases["b"], releases["a"], args),
    ]
    time.sleep(2)  # one more memory sample at steady state
    memory.stop()
    print("\n== results")
    for result in results:
        print_switch(result, memory, budget.host_memory_mb, workers, events)
        if result.windows["whole run"].failures:
            failure_timeline(result)
    if any(result.windows["whole run"].failures for result in results):
        print("\n== nginx's account of the failures")
        nginx_evidence(stack, results[-1])
    print_memory(stack, memory, budget)
    print_summary(results)
    failed = sum(result.windows["whole run"].failures for result in results)
    return 1 if failed or any(result.error for result in results) else 0


def print_memory(stack: LocalStack, memory: MemorySampler, budget: MemoryBudget) -> None:
    """The stack's measured memory (its peak, and at the end) against the declared budget."""
    peak = memory.peak()
    steady = memory.samples[-1] if memory.samples else None
    print("\n== memory (docker stats: usage − inactive file cache, every container "
          f"{stack.prefix}-*, {len(memory.samples)} samples, {memory.errors} failed)")
    if peak:
        print(f"  peak {peak.total_mb:.0f} MB of host.memory_mb {budget.host_memory_mb} MB "
              f"({100 * peak.total_mb / budget.host_memory_mb:.0f} %); declared: steady "
              f"{budget.steady_mb} MB (incl. {budget.steady[0].memory_mb} MB OS reserve), "
              f"release peak {budget.peak_mb} MB of RAM + swap "
              f"{budget.host_memory_mb + budget.host_swap_mb} MB")
        for name, value in sorted(peak.by_container.items(), key=lambda item: -item[1]):
            print(f"    {name:<44} {value:6.1f} MB")
    if steady:
        print(f"  at the end (steady, one release per environment): "
              f"{steady.total_mb:.0f} MB")


def print_summary(results: list[SwitchResult]) -> None:
    print("\n== summary")
    for result in results:
        whole = result.windows["whole run"]
        print(f"  {result.label:<8} {result.source} → {result.target}: "
              f"{whole.requests} requests, {whole.failures} failed, {whole.retries} "
              f"retried, release time {result.up_ended - result.up_started:.1f} s"
              f"{', UPDATE FAILED' if result.error else ''}")


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: does any client notice an nginx reload? Today's mechanism against the new one.

Not a test: it prints numbers and the conditions they were measured under.

    python3 -m bench.switch [--rate 40] [--seconds 40] [--mechanisms default,kept]

As root (wrk runs in a mount namespace of its own that resolves the stack's domain to
127.0.0.1), with dockerd up and the stand-in images built (tests/images/build-standins.sh),
and Debian's `wrk` installed. It stands up a `local` stack of its own (the replay of what
the program declares, tests/harness/local_stack.py), removes it at the end, also on error.

Two mechanisms, on the same stack one after the other:

- `default`: nginx's own behaviour, `keepalive_min_timeout 0` (what the program did before):
  a reload makes the old worker close its idle keep-alive connections at once;
- `kept`: the program's default, `keepalive_min_timeout` = `keepalive_timeout`: a reload
  closes no kept-alive connection; the old worker answers its next request, with
  `Connection: close`, and the client reconnects to the new worker.

For each, four events that reload nginx, each under the same load: a release A → B of prod,
a rollback B → A by config, a certificate renewal's reload (new certificate files for the
prod domain, then the program's reload command, as certbot's deploy hook does) and a config
change (platform.nginx.general_rate_per_second, the HostFile's reload). The load, all from
127.0.0.1, paced, each client counted apart:

- browser: tests/harness/load.py, keep-alive GETs that retry once a reused connection found
  closed before any response byte (RFC 9112 §9.3.1), counted as retries;
- strict GET, strict POST, HTTP/2: tests/harness/strict.py, never retried; every POST
  carries a unique text, and afterwards the notes table must hold each acknowledged one
  exactly once and no failed one;
- idle: one strict keep-alive connection sending a GET every --idle-every seconds (a
  mobile app, a webhook sender between events): the case a reload hurts most;
- wrk (Debian's wrk 4.1, its own HTTP client, paced by a Lua delay()): its socket errors
  and non-2xx responses.

Also printed: for the releases, how long after the switch step the previous release still
answered a request (the bound is keepalive_min_timeout: one more request per kept-alive
connection, at most that long after the reload).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.engine import DockerEngine
from tests.harness.load import Load, Record
from tests.harness.local_stack import (
    LocalStack,
    build_images,
    release_tags,
    remove_everything,
    start_local_stack,
)
from tests.harness.strict import StrictGets, StrictH2, StrictPosts

ENVIRONMENT = "prod"
MECHANISMS = {"default": 0, "kept": None}  # platform.nginx.keepalive_min_timeout_seconds
# Well above what the clients send together, so that no request meets the rate limit.
RATE_LIMIT = 2000


# ---------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    failures: int
    kinds: dict[str, int]

    def line(self) -> str:
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.kinds.items() if count)
        return f"{self.requests} requests, {self.failures} failed" + \
            (f" ({kinds})" if kinds else "")


class Wrk:
    """Debian's wrk against the stack's domain for `seconds`, paced to about `rate` r/s.

    wrk takes the host name from its URL (SNI and Host), so it runs in a mount namespace of
    its own where /etc/hosts sends the domain to 127.0.0.1; nothing on the host changes.
    """

    def __init__(self, port: int, domain: str, rate: float, seconds: float,
                 connections: int = 2):
        self.port, self.domain, self.seconds, self.connections = port, domain, seconds, connections
        self.delay_ms = max(1, int(1000 * connections / rate))
        self.process: subprocess.Popen | None = None
        self.directory = Path(tempfile.mkdtemp(prefix="aiia-bench-wrk-"))

    def start(self) -> Wrk:
        hosts = self.directory / "hosts"
        hosts.write_text(f"127.0.0.1 localhost {self.domain}\n")
        script = self.directory / "pace.lua"
        script.write_text(f"function delay()\n  return {self.delay_ms}\nend\n")
        command = (f"mount --bind {hosts} /etc/hosts && exec wrk -t1 -c{self.connections} "
                   f"-d{int(self.seconds)}s --timeout 10s -s {script} "
                   f"https://{self.domain}:{self.port}/")
        self.process = subprocess.Popen(["unshare", "--mount", "sh", "-c", command],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        return self

    def result(self) -> WrkResult:
        assert self.process is not None
        output, _ = self.process.communicate(timeout=self.seconds + 60)
        shutil.rmtree(self.directory, ignore_errors=True)
        requests = re.search(r"(\d+) requests in", output)
        if self.process.returncode != 0 or not requests:
            raise RuntimeError(f"wrk failed ({self.process.returncode}):\n{output}")
        kinds = {}
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                           r"timeout (\d+)", output)
        if errors:
            kinds = dict(zip(("connect", "read", "write", "timeout"),
                             map(int, errors.groups()), strict=True))
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        kinds["non-2xx"] = int(non_2xx.group(1)) if non_2xx else 0
        return WrkResult(int(requests.group(1)), sum(kinds.values()), kinds)


# ---------------------------------------------------------------------- one event under load


@dataclass
class Row:
    client: str
    requests: int
    failures: int
    retries: int
    resent_after_goaway: int
    kinds: dict[str, int]


@dataclass
class EventResult:
    mechanism: str
    event: str
    rows: list[Row]
    writes: str
    writes_consistent: bool
    previous_last_after_switch: float | None  # seconds; releases only
    reload_at: float | None


class Clients:
    """Every client of the benchmark, started together, bounded by `seconds`."""

    def __init__(self, stack: LocalStack, rate: float, seconds: float, idle_every: float):
        port, domain = stack.https_port, stack.domain(ENVIRONMENT)
        total = int(rate * seconds)
        bound = seconds + 15
        self.browser = Load(port, domain, "/", rate=rate, total=total, connections=4,
                            max_seconds=bound)
        self.gets = StrictGets(port, domain, "/", rate=rate, total=total, connections=4,
                               max_seconds=bound)
        self.posts = StrictPosts(port, domain, rate=rate / 2, total=total // 2, connections=4,
                                 max_seconds=bound)
        self.h2 = StrictH2(port, domain, "/", rate=rate, total=total, max_seconds=bound)
        self.idle = StrictGets(port, domain, "/", rate=1 / idle_every,
                               total=max(2, int(seconds / idle_every)), connections=1,
                               max_seconds=bound)
        self.wrk = Wrk(port, domain, rate, seconds)
        self.loads = {"browser": self.browser, "strict GET": self.gets,
                      "strict POST": self.posts, "HTTP/2": self.h2, "idle": self.idle}

    def start(self) -> Clients:
        for load in self.loads.values():
            load.start()
        self.wrk.start()
        return self

    def finish(self) -> tuple[list[Row], list[Record]]:
        rows = []
        records: list[Record] = []
        for name, load in self.loads.items():
            load.wait()
            load.stop()
            summary = load.summary()
            rows.append(Row(name, summary.requests, summary.failures, summary.retries,
                            getattr(summary, "refused_by_goaway", 0),
                            dict(summary.failure_kinds)))
            records.extend(load.results)
        wrk = self.wrk.result()
        rows.append(Row("wrk", wrk.requests, wrk.failures, 0, 0,
                        {k: v for k, v in wrk.kinds.items() if v}))
        return rows, records


def switch_step_end(stack: LocalStack, after: float) -> float | None:
    ends = [end for action, name, _, end in
            (event for event in stack.replay.events if isinstance(event, tuple)
             and len(event) == 4)
            if name == f"app-{ENVIRONMENT}-upstream-install" and end >= after]
    return min(ends) if ends else None


def run_event(stack: LocalStack, mechanism: str, event: str, action, args,
              previous: str | None = None) -> EventResult:
    clients = Clients(stack, args.rate, args.seconds, args.idle_every).start()
    time.sleep(args.before)
    started = time.monotonic()
    action()
    reload_at = switch_step_end(stack, started) if previous else time.monotonic()
    rows, records = clients.finish()
    check = clients.posts.check(stack.notes_written(ENVIRONMENT, clients.posts.prefix))
    last_previous = None
    if previous and reload_at is not None:
        served = [r.finished for r in records if r.release == previous]
        last_previous = max(served) - reload_at if served else None
    return EventResult(mechanism, event, rows, check.line(), check.consistent,
                       last_previous, reload_at)


# ---------------------------------------------------------------------- report


def print_event(result: EventResult) -> None:
    print(f"\n-- {result.mechanism}: {result.event}")
    print(f"  {'client':<12} {'requests':>8} {'failed':>7} {'retried':>8} "
          f"{'resent after GOAWAY':>20}  failures by kind")
    for row in result.rows:
        kinds = "; ".join(f"{kind}: {count}" for kind, count in row.kinds.items())
        print(f"  {row.client:<12} {row.requests:>8} {row.failures:>7} {row.retries:>8} "
              f"{row.resent_after_goaway:>20}  {kinds}")
    print(f"  {result.writes}{'' if result.writes_consistent else '  INCONSISTENT'}")
    if result.previous_last_after_switch is not None:
        print(f"  previous release last answered {result.previous_last_after_switch:.2f} s "
              "after the switch step ended")


def print_summary(results: list[EventResult]) -> None:
    print("\n== summary: failed / retried (+ resent after GOAWAY) per client")
    clients = [row.client for row in results[0].rows]
    print(f"  {'mechanism':<9} {'event':<22} " + " ".join(f"{c:>12}" for c in clients)
          + f" {'total requests':>15}")
    for result in results:
        cells = []
        for row in result.rows:
            extra = f"+{row.resent_after_goaway}" if row.resent_after_goaway else ""
            cells.append(f"{row.failures}/{row.retries}{extra}".rjust(12))
        total = sum(row.requests for row in result.rows)
        print(f"  {result.mechanism:<9} {result.event:<22} " + " ".join(cells)
              + f" {total:>15}")


def conditions(engine: DockerEngine, stack: LocalStack, args) -> None:
    version = engine.request("GET", "/version")
    nginx = stack.exec(stack.container("nginx"), "nginx", "-v").stderr.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    print("\n== conditions")
    print(f"  machine: {os.cpu_count()} cores, Linux {platform.release()}, Docker "
          f"{version.get('Version')}, Python {platform.python_version()}, {nginx}, "
          f"{wrk.splitlines()[0] if wrk else 'wrk ?'}")
    print(f"  per event: {args.before:.0f} s of load before it, {args.seconds:.0f} s of load "
          f"in all; browser, strict GET, HTTP/2 and wrk {args.rate:.0f} r/s each (4, 4, 1, 2 "
          f"connections), strict POST {args.rate / 2:.0f} r/s on 4, idle one GET every "
          f"{args.idle_every:.0f} s; rate limits raised to {RATE_LIMIT} r/s for the bench; "
          f"prod watch_seconds {stack.config['aiia:releases'][ENVIRONMENT]['watch_seconds']}")


def with_nginx(config: dict, **values) -> dict:
    config = copy.deepcopy(config)
    nginx = config["aiia:platform"].setdefault("nginx", {})
    for key, value in values.items():
        if value is None:
            nginx.pop(key, None)
        else:
            nginx[key] = value
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=40, help="r/s of each client")
    parser.add_argument("--seconds", type=float, default=40, help="load per event")
    parser.add_argument("--before", type=float, default=4,
                        help="seconds of load before the event")
    parser.add_argument("--idle-every", type=float, default=6,
                        help="seconds between the idle client's requests")
    parser.add_argument("--mechanisms", default="default,kept")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    mechanisms = args.mechanisms.split(",")
    unknown = [m for m in mechanisms if m not in MECHANISMS]
    if unknown:
        parser.error(f"unknown mechanism(s) {unknown}; known: {', '.join(MECHANISMS)}")
    if os.geteuid() != 0 or not shutil.which("wrk"):
        parser.error("run as root with Debian's wrk installed (apt-get install wrk)")

    engine = DockerEngine()
    if not args.no_build:
        build_images()
    releases = release_tags(engine)
    stack: LocalStack | None = None
    results: list[EventResult] = []
    try:
        print("== standing up the local stack", flush=True)
        stack = start_local_stack(engine, releases)
        stack.replay.log = lambda line: None
        base = with_nginx(stack.config, general_rate_per_second=RATE_LIMIT,
                          api_rate_per_second=RATE_LIMIT)
        stack.up(base)
        conditions(engine, stack, args)
        for mechanism in mechanisms:
            stack.up(with_nginx(stack.config,
                                keepalive_min_timeout_seconds=MECHANISMS[mechanism]))
            events = [
                ("release A → B", lambda: stack.up(stack.with_release(ENVIRONMENT,
                                                                       releases["b"])),
                 releases["a"]),
                ("rollback B → A", lambda: stack.up(stack.with_release(ENVIRONMENT,
                                                                        releases["a"])),
                 releases["b"]),
                ("certificate reload", lambda: stack.renew_certificate(ENVIRONMENT), None),
                ("config change reload", lambda: stack.up(with_nginx(
                    stack.config, general_rate_per_second=RATE_LIMIT - 1
                    if stack.config["aiia:platform"]["nginx"]["general_rate_per_second"]
                    == RATE_LIMIT else RATE_LIMIT)), None),
            ]
            for event, action, previous in events:
                print(f"== {mechanism}: {event}", flush=True)
                result = run_event(stack, mechanism, event, action, args, previous)
                print_event(result)
                results.append(result)
        print_summary(results)
        print("\n  (failed/retried: failures / browser-style retries; +n: HTTP/2 requests "
              "refused by a GOAWAY, unprocessed, sent again on a new connection)")
        print(json.dumps({f"{r.mechanism}: {r.event}": {row.client: [row.failures,
                                                                      row.retries]
                                                         for row in r.rows}
                          for r in results}))
        return 0 if all(row.failures == 0 for r in results if r.mechanism == "kept"
                        for row in r.rows) else 1
    finally:
        if stack is not None:
            print(f"\n== removing the stack {stack.prefix}", flush=True)
            remove_everything(engine, stack.prefix, stack.root)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())

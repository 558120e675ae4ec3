"""Benchmark of the status dashboard's server: memory, CPU, API latency, page weight.

Not a test: it prints numbers and the conditions they were measured under.

    python3 -m bench.dashboard [--duration 60] [--interval 2]

It builds a realistic host state (two environments with 30 days of probes, seven services
behind a stand-in Docker Engine, releases, backups, certificates, a 2-hour access log: the
fixtures of tests/unit/dashboard/), runs the collector, starts ``python3 -m dashboard
serve`` for real (as ``nobody`` when run as root, with Debian's python3 if it has psutil),
then polls /api/status and /api/logs every ``interval`` seconds for ``duration`` seconds
like an open browser tab, while the collector keeps running every 30 s (the local stack's
schedule, twice the VPS's). Each poll prints the server's RSS, its CPU % since the previous
poll and the API latencies.

Baseline, in the same run and under the same polling: ``python3 -m http.server`` serving
the page's JavaScript file, i.e. what the interpreter alone costs. Targets (issue #5):
RSS ≤ 30 MB, CPU ≤ 1 % on average, p99 ≤ 50 ms, page ≤ 100 KB.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.harness import dashboard_status as fixtures

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_RSS_MB = 30.0
TARGET_CPU_PERCENT = 1.0
TARGET_P99_MS = 50.0
TARGET_PAGE_KB = 100.0
PAGE_ASSETS = ("/", "/static/app.js", "/static/style.css", "/static/favicon.svg")
AUTH = "Basic " + base64.b64encode(f"{fixtures.USER}:{fixtures.PASSWORD}".encode()).decode()


def get(port: int, path: str, authorization: str | None = AUTH) -> tuple[float, int, bytes, int]:
    """(latency ms, status, body, bytes on the wire incl. headers) of one GET, new connection
    each time (as nginx's proxy_pass does by default)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "GET", path, headers={"Authorization": authorization} if authorization else {}
        )
        response = connection.getresponse()
        body = response.read()
        header_bytes = sum(len(k) + len(v) + 4 for k, v in response.getheaders()) + 17
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000, response.status, body, len(body) + header_bytes


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--collect-every", type=float, default=30.0)
    args = parser.parse_args()

    root = fixtures.readable_tempdir("aiia-dashboard-bench-")
    try:
        with fixtures.realistic_host(root, iterations=310_000) as host:
            collection = host.collect()
            state = host.state
            with (
                fixtures.running_server(state.config_path) as (server, port),
                baseline_server() as (baseline, baseline_port),
            ):
                return run(args, host, collection, server, port, baseline, baseline_port)
    finally:
        fixtures.remove_tree(root)


class baseline_server:  # noqa: N801 - used as a context manager, reads like one
    """python3 -m http.server on the static folder, as the same user and interpreter."""

    def __enter__(self):
        port = fixtures.free_port()
        self.process = subprocess.Popen(
            [
                fixtures.server_python(),
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                str(port),
                "--directory",
                str(REPO_ROOT / "dashboard" / "static"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **fixtures.server_user_kwargs(),
        )
        fixtures.wait_for_port(port, self.process)
        return self.process, port

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)


def run(args, host, collection, server, port, baseline, baseline_port) -> int:
    process = psutil.Process(server.pid)
    base_process = psutil.Process(baseline.pid)
    python = fixtures.server_python()
    python_version = subprocess.run(
        [python, "-c", "import sys, psutil; print(sys.version.split()[0], psutil.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    config_state = Path(host.state.config_path.parent) / "state" / "dashboard"
    memory = psutil.virtual_memory()

    print("== conditions")
    print(f"date (UTC)        {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}")
    print(
        f"machine           {platform.node()} · {platform.machine()} · {psutil.cpu_count()} "
        f"CPU · {memory.total / 2**30:.1f} GiB RAM · load {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"server            {python} (Python {python_version[0]}, psutil "
        f"{python_version[1]}) as uid {process.uids().effective}, pid {server.pid}"
    )
    snapshot = json.loads((config_state / "status.json").read_text())
    print(
        f"state             {len(snapshot['environments'])} environments with 30 days of "
        f"1-min probes, {len(snapshot['services'])} services, "
        f"{snapshot['releases']['total']} releases, {snapshot['backups']['total']} backups, "
        f"{len(snapshot['certificates'])} certificates; status.json "
        f"{(config_state / 'status.json').stat().st_size / 1024:.1f} KB, SQLite "
        f"{(config_state / 'dashboard.sqlite3').stat().st_size / 2**20:.1f} MB"
    )
    print(
        f"polling           /api/status + /api/logs?service=app-prod every {args.interval:g} s "
        f"for {args.duration:g} s, new TCP connection per request (like nginx's proxy)"
    )
    print(
        f"collector         every {args.collect_every:g} s during the run "
        f"(first run: {collection.stderr.strip()})"
    )
    print("auth              Basic, PBKDF2-SHA256 310,000 iterations, verification cached")
    print(
        "baseline          python3 -m http.server (same user/interpreter) serving app.js, "
        "polled alongside"
    )

    # The first authenticated request pays PBKDF2 once (then the cache answers).
    first_ms = get(port, "/api/status")[0]
    # The page: what a browser downloads on first load.
    page_bytes = page_wire = page_gzip = 0
    for path in PAGE_ASSETS:
        _, status, body, wire = get(port, path)
        assert status == 200, (path, status)
        page_bytes += len(body)
        page_wire += wire
        page_gzip += len(gzip.compress(body, 6))
    time.sleep(1.0)

    print("\n== polls")
    print("   t s   RSS MB   CPU %   status ms   logs ms   status KB │ baseline: RSS MB  CPU %  ms")
    rows = []
    status_latencies: list[float] = []
    log_latencies: list[float] = []
    base_latencies: list[float] = []
    started = time.monotonic()
    cpu_start, base_cpu_start = cpu_seconds(process), cpu_seconds(base_process)
    previous_cpu, previous_base_cpu, previous_t = cpu_start, base_cpu_start, started
    next_collect = started + args.collect_every
    collections = []
    tick = 0
    while True:
        target = started + tick * args.interval
        if target - started > args.duration:
            break
        time.sleep(max(0.0, target - time.monotonic()))
        if time.monotonic() >= next_collect:
            collect_started = time.monotonic()
            result = host.collect()
            collections.append((time.monotonic() - collect_started, result.stderr.strip()))
            next_collect += args.collect_every
        status_ms, status_code, status_body, _ = get(port, "/api/status")
        logs_ms, logs_code, _, _ = get(port, "/api/logs?service=app-prod")
        base_ms, base_code, _, _ = get(baseline_port, "/app.js", authorization=None)
        assert (status_code, logs_code, base_code) == (200, 200, 200)
        now = time.monotonic()
        cpu, base_cpu = cpu_seconds(process), cpu_seconds(base_process)
        elapsed = now - previous_t
        rss = process.memory_info().rss / 2**20
        base_rss = base_process.memory_info().rss / 2**20
        cpu_percent = 100 * (cpu - previous_cpu) / elapsed if tick else 0.0
        base_percent = 100 * (base_cpu - previous_base_cpu) / elapsed if tick else 0.0
        previous_cpu, previous_base_cpu, previous_t = cpu, base_cpu, now
        status_latencies.append(status_ms)
        log_latencies.append(logs_ms)
        base_latencies.append(base_ms)
        rows.append(rss)
        print(
            f"{now - started:6.1f}   {rss:6.1f}   {cpu_percent:5.2f}   {status_ms:9.1f}   "
            f"{logs_ms:7.1f}   {len(status_body) / 1024:9.1f} │           {base_rss:6.1f}  "
            f"{base_percent:5.2f}  {base_ms:4.1f}",
            flush=True,
        )
        tick += 1
    wall = time.monotonic() - started
    cpu_average = 100 * (cpu_seconds(process) - cpu_start) / wall
    base_average = 100 * (cpu_seconds(base_process) - base_cpu_start) / wall
    rss_peak = max(rows)
    all_api = status_latencies + log_latencies

    print("\n== results (dashboard server)")
    print(
        f"RSS               peak {rss_peak:.1f} MB, last {rows[-1]:.1f} MB "
        f"(target ≤ {TARGET_RSS_MB:g} MB)  {verdict(rss_peak <= TARGET_RSS_MB)}"
    )
    print(
        f"CPU               {cpu_average:.2f} % of one core over {wall:.0f} s "
        f"(target ≤ {TARGET_CPU_PERCENT:g} %)  {verdict(cpu_average <= TARGET_CPU_PERCENT)}"
    )
    for name, values in (("/api/status", status_latencies), ("/api/logs", log_latencies)):
        print(
            f"latency {name:<11} p50 {statistics.median(values):.1f} ms, p99 "
            f"{percentile(values, 0.99):.1f} ms, max {max(values):.1f} ms "
            f"(n={len(values)})"
        )
    api_p99 = percentile(all_api, 0.99)
    print(
        f"latency API p99   {api_p99:.1f} ms over {len(all_api)} requests "
        f"(target ≤ {TARGET_P99_MS:g} ms)  {verdict(api_p99 <= TARGET_P99_MS)}"
    )
    print(f"first request     {first_ms:.0f} ms (pays PBKDF2 once; cached afterwards)")
    print(
        f"page              {page_bytes / 1024:.1f} KB of HTML+JS+CSS+icon, "
        f"{page_wire / 1024:.1f} KB with headers, {page_gzip / 1024:.1f} KB gzipped "
        f"(target ≤ {TARGET_PAGE_KB:g} KB)  {verdict(page_wire / 1024 <= TARGET_PAGE_KB)}"
    )
    print(
        f"status poll       {len(status_body) / 1024:.1f} KB per /api/status "
        f"({len(gzip.compress(status_body, 6)) / 1024:.1f} KB gzipped)"
    )
    for seconds, message in collections:
        print(f"collector run     {seconds * 1000:.0f} ms wall incl. interpreter start ({message})")
    print("\n== baseline (python3 -m http.server, same polling)")
    print(
        f"RSS               {base_process.memory_info().rss / 2**20:.1f} MB; CPU "
        f"{base_average:.2f} %; latency p50 {statistics.median(base_latencies):.1f} ms, "
        f"p99 {percentile(base_latencies, 0.99):.1f} ms"
    )
    print(
        f"dashboard − baseline: RSS +{rss_peak - base_process.memory_info().rss / 2**20:.1f} MB,"
        f" CPU +{cpu_average - base_average:.2f} points"
    )
    ok = (
        rss_peak <= TARGET_RSS_MB
        and cpu_average <= TARGET_CPU_PERCENT
        and api_p99 <= TARGET_P99_MS
        and page_wire / 1024 <= TARGET_PAGE_KB
    )
    print(f"\nall targets: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The privileged half: gather everything the page shows and hand it over as files.

Runs once a minute (systemd timer on a VPS, a loop in a container locally) with the right
to read files of others (certificates, logs, the journal), and Docker's API through the
GET-only proxy of docker_proxy.py, never the socket itself (review L2). It writes

    <state_dir>/dashboard.sqlite3       history (probes, host samples, request counts)
    <state_dir>/status.json             the snapshot the server serves (atomic rename)
    <state_dir>/logs/<service>.json     the last lines of each service's log

Each step is isolated: Docker being down must not stop probes, certificates or records
from being reported; the failure itself is listed in ``collector.errors``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from . import (
    __version__,
    access_log,
    host,
    host_access,
    log_shipping,
    pitr,
    records,
    store,
    uptime,
)
from .certificates import certificate_status, renewal_state
from .config import Config, Environment, LogSource
from .docker_api import ContainerState, DockerClient, DockerError
from .files import write_json_atomic
from .log_tail import tail_lines
from .probes import probe
from .redact import redact_lines
from .timestamps import format_utc, parse_utc

SCHEMA_VERSION = 1
LOG_LINES_KEPT = 200
HISTORY_HOURS = 6
HISTORY_STEP_SECONDS = 300
TIMELINE_STEP_SECONDS = 900  # 24 h availability strip: 96 cells of 15 minutes
UPTIME_WINDOWS = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
ACCESS_LOG_CURSOR_KEY = "access_log_cursor"
MiB = 1024 * 1024
HEALTH_PATH_LABEL = "aiia.health.path"


def probe_target(environment: Environment, containers: list[ContainerState]) -> Environment:
    """The environment with the health path its app says (the `aiia.health.path` label a
    release's contract sets, components/release/health_route.py) in place of the config's:
    the newest running app container's, since the release that started last is the one
    nginx serves once it is healthy. Without one (no label, Docker down), the config's."""
    apps = [c for c in containers
            if c.state == "running" and c.labels.get("aiia.service") == "app"
            and c.labels.get("aiia.environment") == environment.name
            and c.labels.get(HEALTH_PATH_LABEL, "").startswith("/")]
    if not apps:
        return environment
    path = max(apps, key=lambda c: c.started_at or "").labels[HEALTH_PATH_LABEL]
    url = urllib.parse.urlsplit(environment.health_url)
    path, _, query = path.partition("?")
    return dataclasses.replace(environment, health_url=urllib.parse.urlunsplit(
        (url.scheme, url.netloc, path, query, "")))


class CollectorBusy(RuntimeError):
    """Another collection holds the lock (a slow run overlapping the next tick)."""


class Collection:
    """One collection run; ``errors`` gathers what failed without stopping the rest."""

    def __init__(
        self, config: Config, now: float | None = None, docker: DockerClient | None = None
    ) -> None:
        self.config = config
        self.now = int(now if now is not None else time.time())
        self.docker = docker or DockerClient(config.docker_socket)
        self.errors: list[dict[str, str]] = []
        self.containers: list[ContainerState] | None = None

    def step(self, name: str, action: Callable[[], Any], fallback: Any = None) -> Any:
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - one broken source must not hide the others
            self.errors.append({"step": name, "message": f"{type(error).__name__}: {error}"[:500]})
            return fallback

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        with store.open_store(config.database_path) as db:
            self.step("host", lambda: self._record_host_sample(db))
            self.containers = self.step(
                "docker", lambda: self.docker.labelled_containers(stack=config.stack)
            )
            memory = self.step("docker stats", self._memory_usage, {}) if self.containers else {}
            self.step("probes", lambda: self._probe_environments(db))
            access = self.step("access log", lambda: self._read_access_log(db), {})
            self.step("retention", lambda: store.prune(db, self.now, config.retention))
            environments = [self._environment_view(db, env.name) for env in config.environments]
            rates = self.step("access log", lambda: self._error_rates(db, environments), {}) or {}
            host_history = self.step("host", lambda: self._host_history(db), None)
        renewal = renewal_state(config.certbot_state_file)
        certificates = [
            certificate_status(c.domain, c.path, self.now, renewal) for c in config.certificates
        ]
        releases = records.summarize_releases(
            records.read_records(config.releases_file), [e.name for e in config.environments]
        )
        backups = records.summarize_jobs(
            records.read_records(config.backups_file), needs_verification=True
        )
        restore_tests = records.summarize_jobs(records.read_records(config.restore_tests_file))
        recovery = self.step("pitr", lambda: pitr.summarize(
            config.pitr_file, config.pitr_drills_file, config.pulumi_stack))
        shipping = self.step("log shipping", lambda: log_shipping.summarize(
            config.log_shipping_file, config.root_dir))
        journal = config.host_access
        logins = journal and self.step("logins", lambda: host_access.collect(
            config.state_dir, journal.deploy_user, journal.known_keys, self.now))
        logs = {
            source.service: self.step(
                f"logs {source.service}", lambda s=source: self._save_log_tail(s), None
            )
            for source in config.log_sources
        }
        document = {
            "schema": SCHEMA_VERSION,
            "collected_at": format_utc(self.now),
            "collector": {
                "version": __version__,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "every_s": config.collect_every_seconds,
                "errors": self.errors,
            },
            "host_history": host_history,
            "services": self._service_views(memory or {}),
            "environments": environments,
            "access_log": {**(access or {}), **rates},
            "certificates": certificates,
            "certificate_renewal": renewal,
            "releases": releases,
            "backups": backups,
            "restore_tests": restore_tests,
            "pitr": recovery,
            "log_shipping": shipping,
            "host_access": logins,
            "logs": {name: info for name, info in logs.items() if info is not None},
        }
        write_json_atomic(config.status_path, document)
        return document

    # -- host ---------------------------------------------------------------------------
    def _record_host_sample(self, db: sqlite3.Connection) -> None:
        store.insert_host_sample(
            db, host_sample(self.config.root_dir, self.now, store.last_host_sample(db))
        )

    def _host_history(self, db: sqlite3.Connection) -> dict[str, Any]:
        start = _bucket_start(self.now, HISTORY_HOURS)
        buckets = HISTORY_HOURS * 3600 // HISTORY_STEP_SECONDS
        sums: dict[str, list[list[float]]] = {
            key: [[] for _ in range(buckets)]
            for key in ("cpu_percent", "memory_percent", "swap_percent", "disk_percent", "load1")
        }
        for sample in store.host_samples_since(db, start):
            index = int((sample.ts - start) // HISTORY_STEP_SECONDS)
            if 0 <= index < buckets:
                for key, values in sums.items():
                    value = getattr(sample, key)
                    if value is not None:
                        values[index].append(value)
        return {
            "start": format_utc(start),
            "step_s": HISTORY_STEP_SECONDS,
            **{
                key: [round(sum(v) / len(v), 2) if v else None for v in values]
                for key, values in sums.items()
            },
        }

    # -- containers ---------------------------------------------------------------------
    def _memory_usage(self) -> dict[str, int | None]:
        running = [c for c in self.containers or [] if c.state == "running"]
        with ThreadPoolExecutor(max_workers=4) as pool:
            usages = pool.map(
                lambda c: self.step(
                    f"docker stats {c.name}", lambda: self.docker.memory_usage(c.id)
                ),
                running,
            )
            return {c.id: usage for c, usage in zip(running, usages, strict=True)}

    def _service_views(self, memory: dict[str, int | None]) -> list[dict[str, Any]]:
        views: list[dict[str, Any]] = []
        containers = self.containers
        claimed: set[str] = set()
        for service in self.config.services:
            configured_limit = service.memory_limit_mb * MiB
            if containers is None:  # Docker unreachable: say so rather than "missing"
                views.append(
                    _service_view(
                        service.name,
                        service.environment,
                        None,
                        None,
                        configured_limit,
                        state="unknown",
                    )
                )
                continue
            mine = [c for c in containers if service.matches(c.name, c.labels)]
            claimed.update(c.id for c in mine)
            if not mine:
                views.append(
                    _service_view(
                        service.name,
                        service.environment,
                        None,
                        None,
                        configured_limit,
                        state="missing",
                    )
                )
            for container in sorted(mine, key=lambda c: c.started_at or "", reverse=True):
                views.append(
                    _service_view(
                        service.name,
                        service.environment,
                        container,
                        memory.get(container.id),
                        configured_limit,
                    )
                )
        for container in containers or []:
            if container.id not in claimed:
                view = _service_view(
                    container.labels.get("aiia.service", container.name),
                    container.labels.get("aiia.environment"),
                    container,
                    memory.get(container.id),
                    None,
                )
                view["configured"] = False
                views.append(view)
        return views

    # -- probes and uptime --------------------------------------------------------------
    def _probe_environments(self, db: sqlite3.Connection) -> None:
        environments = self.config.environments
        if not environments:
            return
        timeout = self.config.probe_timeout_seconds
        targets = [probe_target(env, self.containers or []) for env in environments]
        with ThreadPoolExecutor(max_workers=len(environments)) as pool:
            rows = list(pool.map(lambda env: probe(env, timeout, now=self.now), targets))
        store.insert_probes(db, rows)

    def _environment_view(self, db: sqlite3.Connection, name: str) -> dict[str, Any]:
        environment = probe_target(next(e for e in self.config.environments if e.name == name),
                                   self.containers or [])
        longest = max(UPTIME_WINDOWS.values())
        points = store.probe_points_since(
            db, name, self.now - longest - uptime.DEFAULT_MAX_GAP_SECONDS
        )
        first = store.first_probe_ts(db, name)
        intervals = uptime.probe_intervals(points, self.now)
        uptimes = {}
        for window, seconds in UPTIME_WINDOWS.items():
            result = uptime.uptime(intervals, self.now - seconds, self.now, first)
            uptimes[window] = {
                "percent": result.percent,
                "coverage_percent": result.coverage_percent,
                "down_s": round(result.down_seconds),
                "gap_s": round(result.gap_seconds),
                "since": format_utc(result.window_start),
            }
        strip_start = _bucket_start(self.now, 24, TIMELINE_STEP_SECONDS)
        latency_start = _bucket_start(self.now, HISTORY_HOURS)
        recent = store.probes_since(db, name, latency_start)
        last = recent[-1] if recent else None
        latency_cells: list[list[float]] = [[] for _ in range(HISTORY_HOURS * 12)]
        for row in recent:
            index = int((row.ts - latency_start) // HISTORY_STEP_SECONDS)
            if index < len(latency_cells) and row.latency_ms is not None:
                latency_cells[index].append(row.latency_ms)
        failing_since = None if last is None or last.ok else store.failing_since(db, name)
        return {
            "name": name,
            "domain": environment.domain,
            "health_url": environment.health_url,
            "maintenance": maintenance_on(self.config.root_dir, name),
            "probe": None
            if last is None
            else {
                "at": format_utc(last.ts),
                "ok": last.ok,
                "status_code": last.status_code,
                "latency_ms": last.latency_ms,
                "error": last.error,
                "failing_since": format_utc(failing_since) if failing_since else None,
            },
            "uptime": uptimes,
            "availability": {
                "start": format_utc(strip_start),
                "step_s": TIMELINE_STEP_SECONDS,
                "values": uptime.timeline(intervals, strip_start, TIMELINE_STEP_SECONDS, 96),
            },
            "latency_history": {
                "start": format_utc(latency_start),
                "step_s": HISTORY_STEP_SECONDS,
                "values": [round(sum(c) / len(c), 1) if c else None for c in latency_cells],
            },
        }

    # -- access log ---------------------------------------------------------------------
    def _read_access_log(self, db: sqlite3.Connection) -> dict[str, Any]:
        path = self.config.access_log
        cursor = access_log.LogCursor.from_json(store.get_state(db, ACCESS_LOG_CURSOR_KEY))
        result = access_log.read_new_lines(path, cursor)
        store.add_request_counts(db, result.counts.per_minute)
        store.add_malformed(db, self.now // 60 * 60, result.counts.malformed)
        if result.cursor is not None:
            store.set_state(db, ACCESS_LOG_CURSOR_KEY, result.cursor.to_json())
        return {
            "path": str(path),
            "present": path.exists(),
            "bytes_read": result.bytes_read,
            "bytes_skipped": result.bytes_skipped,
            "rotated": result.rotated,
            "malformed_lines_1h": store.malformed_since(db, self.now - 3600),
        }

    def _error_rates(
        self, db: sqlite3.Connection, environments: list[dict[str, Any]]
    ) -> dict[str, Any]:
        history_start = _bucket_start(self.now, HISTORY_HOURS)
        rows = store.request_counts_since(db, min(history_start, self.now - 3600))
        rates = access_log.error_rates(rows, self.now)
        empty = {"requests": 0, "errors_5xx": 0, "share_percent": None}
        buckets = HISTORY_HOURS * 3600 // HISTORY_STEP_SECONDS
        for view in environments:
            view["errors"] = rates.get(view["name"], {w: dict(empty) for w in access_log.WINDOWS})
            requests, errors = [0] * buckets, [0] * buckets
            for minute, env, minute_requests, minute_errors in rows:
                index = (minute - history_start) // HISTORY_STEP_SECONDS
                if env == view["name"] and 0 <= index < buckets:
                    requests[index] += minute_requests
                    errors[index] += minute_errors
            view["error_history"] = {
                "start": format_utc(history_start),
                "step_s": HISTORY_STEP_SECONDS,
                "requests": requests,
                "errors_5xx": errors,
            }
        return {"by_environment": rates}

    # -- logs ---------------------------------------------------------------------------
    def _save_log_tail(self, source: LogSource) -> dict[str, Any]:
        info: dict[str, Any] = {
            "source": source.describe(),
            "collected_at": format_utc(self.now),
            "error": None,
        }
        try:
            # Before anything is stored: what the server could ever reveal (review L3).
            lines = redact_lines(self._log_lines(source))
        except (OSError, DockerError, LookupError) as error:
            lines, info["error"] = [], f"{type(error).__name__}: {error}"[:300]
        info["lines"] = len(lines)
        write_json_atomic(
            self.config.logs_dir / f"{source.service}.json",
            {"service": source.service, **info, "lines": lines},
        )
        return info

    def _log_lines(self, source: LogSource) -> list[str]:
        if source.file is not None:
            return tail_lines(source.file, LOG_LINES_KEPT)
        if self.containers is None:
            raise LookupError("Docker unreachable; see collector errors")
        if source.container is not None:
            candidates = [c for c in self.containers if c.name == source.container]
            # A container outside our labels can still be named explicitly.
            target = candidates[0].id if candidates else source.container
        else:
            candidates = [
                c
                for c in self.containers
                if c.labels.get("aiia.service") == source.container_label
                and (
                    source.environment is None
                    or c.labels.get("aiia.environment") == source.environment
                )
            ]
            if not candidates:
                raise LookupError(f"no container for {source.describe()}")
            # The running, most recently started one: the release that has the traffic.
            target = max(candidates, key=lambda c: (c.state == "running", c.started_at or "")).id
        return self.docker.log_tail(target, LOG_LINES_KEPT)


def maintenance_on(root_dir: Path, environment: str) -> bool:
    """Whether nginx answers the environment's visitors with the maintenance page: its
    switch (templates/nginx/maintenance.conf.j2) says `default 1;`."""
    path = root_dir / "nginx" / "maintenance" / f"{environment}.conf"
    try:
        return any(line.strip() == "default 1;" for line in path.read_text().splitlines())
    except OSError:
        return False


def _bucket_start(now: int, hours: int, step: int = HISTORY_STEP_SECONDS) -> int:
    """Start of a history of ``hours`` whose last bucket holds ``now``."""
    return (now // step + 1) * step - hours * 3600


def _service_view(
    name: str,
    environment: str | None,
    container: ContainerState | None,
    memory_used: int | None,
    configured_limit: int | None,
    state: str | None = None,
) -> dict[str, Any]:
    limit = (container.memory_limit_bytes if container else None) or configured_limit
    started = (
        parse_utc(container.started_at[:19] + "Z")
        if container and container.started_at and not container.started_at.startswith("0001")
        else None
    )
    environment = environment or (container.labels.get("aiia.environment") if container else None)
    process = container.labels.get("aiia.process") if container else None
    return {
        # A release's process (releases.<env>.processes) under its own name: worker-prod,
        # as its web container is app-prod.
        "name": f"{process}-{environment}" if process and environment else name,
        "environment": environment,
        "configured": True,
        "container": container.name if container else None,
        "state": state or (container.state if container else "missing"),
        "health": container.health if container else None,
        "restarts": container.restarts if container else None,
        "exit_code": container.exit_code if container else None,
        "oom_killed": container.oom_killed if container else False,
        "started_at": format_utc(started) if started else None,
        "release": container.labels.get("aiia.release") if container else None,
        "image": container.image if container else None,
        "memory_used_bytes": memory_used,
        "memory_limit_bytes": limit,
        "memory_percent": round(100.0 * memory_used / limit, 1) if memory_used and limit else None,
    }


def host_sample(root_dir: Path, now: int, previous: store.HostSample | None) -> store.HostSample:
    """One history point; CPU % averages over the time since the previous collection."""
    busy, total = host.cpu_counters()
    cpu_percent = None
    if previous is not None and total > previous.cpu_total_s and busy >= previous.cpu_busy_s:
        cpu_percent = round(
            100.0 * (busy - previous.cpu_busy_s) / (total - previous.cpu_total_s), 1
        )
    memory = psutil.virtual_memory()
    return store.HostSample(
        ts=now,
        cpu_percent=cpu_percent,
        memory_percent=round(100.0 * (memory.total - memory.available) / memory.total, 1),
        swap_percent=psutil.swap_memory().percent,
        disk_percent=psutil.disk_usage(host.disk_path(root_dir)).percent,
        load1=round(os.getloadavg()[0], 2),
        cpu_busy_s=busy,
        cpu_total_s=total,
    )


def collect_once(
    config: Config, now: float | None = None, docker: DockerClient | None = None
) -> dict[str, Any]:
    """One locked collection; raises CollectorBusy when a previous run still holds the lock."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with open(config.state_dir / ".collect.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise CollectorBusy("another collection is still running") from error
        return Collection(config, now=now, docker=docker).run()

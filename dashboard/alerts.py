"""What needs attention, worst first: the top of the page for an operator paged at 3 a.m.

Pure function of the status document (collector snapshot + live host numbers), so every
rule is tested on fixture data and the server can evaluate it per request for free.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from . import host_access, integrity, log_shipping, pitr
from .certificates import CRITICAL_DAYS, WARNING_DAYS
from .timestamps import ago as _ago
from .timestamps import parse_utc
from .timestamps import when as _when

CRITICAL, WARNING = "critical", "warning"
BACKUP_MAX_AGE_S = 26 * 3600  # daily backups, with two hours of slack
RESTORE_TEST_MAX_AGE_S = 35 * 86400  # monthly restore tests, with slack
RELEASE_STUCK_S = 30 * 60
RECENT_RESTART_S = 3600
MIN_5XX_FOR_CRITICAL = 5


def _alert(severity: str, area: str, subject: str, message: str) -> dict[str, str]:
    return {"severity": severity, "area": area, "subject": subject, "message": message}


def _day(text: str | None) -> str:
    moment = parse_utc(text)
    return (
        "unknown date" if moment is None else f"{datetime.fromtimestamp(moment, tz=UTC):%Y-%m-%d}"
    )


def evaluate(status: dict[str, Any], now: float) -> list[dict[str, str]]:
    alerts: list[dict[str, str]] = []
    alerts += _collector(status, now)
    alerts += _services(status.get("services") or [], now)
    alerts += _environments(status.get("environments") or [], now)
    alerts += _certificates(status.get("certificates") or [], now)
    alerts += _certificate_renewal(status.get("certificate_renewal"), now)
    alerts += _backups(status.get("backups"), status.get("restore_tests"), now)
    alerts += pitr.alerts(status.get("pitr"), now)
    alerts += log_shipping.alerts(status.get("log_shipping"), now)
    alerts += _releases(status.get("releases"), now)
    alerts += _host(status.get("host"))
    alerts += integrity.alerts((status.get("host") or {}).get("integrity"), now)
    alerts += _access_log(status.get("access_log"))
    alerts += host_access.alerts(status.get("host_access"), now)
    alerts += _notifications(status.get("notifications"))
    alerts.sort(key=lambda a: a["severity"] != CRITICAL)  # stable: critical first, rule order kept
    return alerts


def overall(alerts: list[dict[str, str]]) -> str:
    if any(a["severity"] == CRITICAL for a in alerts):
        return CRITICAL
    return WARNING if alerts else "ok"


def _collector(status: dict[str, Any], now: float) -> list[dict[str, str]]:
    alerts = []
    if status.get("snapshot_error"):
        alerts.append(
            _alert(
                CRITICAL,
                "collector",
                "dashboard",
                f"{status['snapshot_error']}: showing the last snapshot it could read. "
                "The state directory must be setgid to the server's group (mode 2750).",
            )
        )
    collected = parse_utc(status.get("collected_at"))
    if collected is None:
        return alerts + [
            _alert(
                CRITICAL,
                "collector",
                "collector",
                "No collection yet: container states, probes and records are unknown. "
                "Check the aiia-dashboard-collect timer.",
            )
        ]
    every = (status.get("collector") or {}).get("every_s") or 60
    age = now - collected
    if age > max(3 * every, 180):
        alerts.append(
            _alert(
                CRITICAL,
                "collector",
                "collector",
                f"Last collection {_ago(age)}: everything except host numbers is "
                "stale. Check the aiia-dashboard-collect timer.",
            )
        )
    for error in (status.get("collector") or {}).get("errors") or []:
        severity = CRITICAL if error.get("step") == "docker" else WARNING
        alerts.append(
            _alert(
                severity,
                "collector",
                error.get("step", "collector"),
                f"Collection step failed: {error.get('message', '')}",
            )
        )
    return alerts


def _services(services: list[dict[str, Any]], now: float) -> list[dict[str, str]]:
    alerts = []
    by_name: dict[str, list[dict[str, Any]]] = {}
    for service in services:
        if service.get("configured", True):
            by_name.setdefault(service["name"], []).append(service)
        elif service.get("state") != "running":
            alerts.append(
                _alert(
                    WARNING,
                    "service",
                    service["name"],
                    f"Leftover container {service.get('container')} is "
                    f"{service.get('state')}; remove it if it is not needed.",
                )
            )
    for name, rows in by_name.items():
        alerts += _service(name, rows, now)
    return alerts


def _service(name: str, rows: list[dict[str, Any]], now: float) -> list[dict[str, str]]:
    """One configured service: its containers (a release runs two for a while)."""
    if all(r.get("state") == "unknown" for r in rows):
        return []  # Docker unreachable: reported once, by the collector rule
    running = [r for r in rows if r.get("state") == "running"]
    if not running:
        return [_alert(CRITICAL, "service", name, _not_running(rows[0]))]
    alerts = []
    for row in running:
        label = f"{name} ({row.get('container')})" if len(rows) > 1 else name
        alerts += _running_container(label, row, now)
    return alerts


def _not_running(row: dict[str, Any]) -> str:
    if row.get("state") == "missing":
        return "No container found. It was never created or has been removed."
    message = f"Container {row.get('container')} is {row.get('state')}"
    if row.get("exit_code") is not None:
        message += f" (exit code {row['exit_code']})"
    if row.get("oom_killed"):
        message += ", killed for running out of memory"
    return message + "."


def _running_container(label: str, row: dict[str, Any], now: float) -> list[dict[str, str]]:
    alerts = []
    if row.get("health") == "unhealthy":
        alerts.append(_alert(CRITICAL, "service", label, "Health check failing."))
    elif row.get("health") == "starting":
        alerts.append(_alert(WARNING, "service", label, "Health check still starting."))
    started = parse_utc(row.get("started_at"))
    if row.get("restarts") and started is not None and now - started < RECENT_RESTART_S:
        alerts.append(
            _alert(
                WARNING,
                "service",
                label,
                f"Restarted {row['restarts']} times; last start {_ago(now - started)}.",
            )
        )
    if (row.get("memory_percent") or 0) >= 90:
        alerts.append(
            _alert(
                WARNING,
                "service",
                label,
                f"Memory at {row['memory_percent']:.0f} % of its limit.",
            )
        )
    return alerts


def _environments(environments: list[dict[str, Any]], now: float) -> list[dict[str, str]]:
    alerts = []
    for env in environments:
        name, probe = env["name"], env.get("probe")
        if probe is None:
            alerts.append(_alert(WARNING, "environment", name, "Not probed yet."))
        elif not probe.get("ok"):
            since = probe.get("failing_since") or probe.get("at")
            alerts.append(
                _alert(
                    CRITICAL,
                    "environment",
                    name,
                    f"Health check failing since {_when(since, now)}: {probe.get('error')}",
                )
            )
        if env.get("maintenance"):
            alerts.append(_alert(WARNING, "environment", name,
                                 f"In maintenance: visitors get the 503 page "
                                 f"(releases.{name}.maintenance; make maintenance ON=0)."))
        day = (env.get("uptime") or {}).get("24h") or {}
        if day.get("percent") is not None and day["percent"] < 99.0:
            alerts.append(
                _alert(WARNING, "environment", name, f"Uptime over 24 h is {day['percent']:.2f} %.")
            )
        if day.get("percent") is not None and day.get("coverage_percent", 100) < 90:
            alerts.append(
                _alert(
                    WARNING,
                    "environment",
                    name,
                    f"Probes cover only {day['coverage_percent']:.0f} % of the "
                    "last 24 h (collector not running part of the time).",
                )
            )
        errors = env.get("errors") or {}
        recent, hour = errors.get("5m") or {}, errors.get("1h") or {}
        share = recent.get("share_percent")
        if share is not None and share >= 5 and recent.get("errors_5xx", 0) >= MIN_5XX_FOR_CRITICAL:
            alerts.append(
                _alert(
                    CRITICAL,
                    "errors",
                    name,
                    f"{share:.1f} % of requests failed with 5xx in the last 5 min "
                    f"({recent['errors_5xx']} of {recent['requests']}).",
                )
            )
        elif (hour.get("share_percent") or 0) >= 1:
            alerts.append(
                _alert(
                    WARNING,
                    "errors",
                    name,
                    f"{hour['share_percent']:.1f} % 5xx over the last hour "
                    f"({hour['errors_5xx']} of {hour['requests']}).",
                )
            )
    return alerts


def _certificates(certificates: list[dict[str, Any]], now: float) -> list[dict[str, str]]:
    alerts = []
    for cert in certificates:
        domain, days = cert["domain"], cert.get("days_left")
        if cert.get("error"):
            alerts.append(_alert(CRITICAL, "certificate", domain, f"Unreadable: {cert['error']}."))
        elif days is not None and days < 0:
            alerts.append(
                _alert(
                    CRITICAL, "certificate", domain, f"Expired on {_day(cert.get('not_after'))}."
                )
            )
        elif days is not None and days < CRITICAL_DAYS:
            alerts.append(
                _alert(
                    CRITICAL,
                    "certificate",
                    domain,
                    f"Expires in {days:.1f} days ({_day(cert.get('not_after'))}). "
                    "Renewal is failing; see the certificate runbook.",
                )
            )
        elif days is not None and days < WARNING_DAYS:
            alerts.append(
                _alert(
                    WARNING,
                    "certificate",
                    domain,
                    f"Expires in {days:.0f} days ({_day(cert.get('not_after'))}); "
                    "renewal should have happened by now.",
                )
            )
        if cert.get("issued") is False:
            alerts.append(
                _alert(
                    CRITICAL,
                    "certificate",
                    domain,
                    "Not yet issued: nginx serves the self-signed bootstrap certificate, which "
                    "browsers refuse. Is DNS pointing here? The renewal job tries again twice a "
                    "day; logs/certbot.log says why the last attempt failed.",
                )
            )
        elif cert.get("renewal_outcome") == "renewal-failed":
            left = "" if days is None else f"; the certificate served has {days:.0f} days left"
            alerts.append(
                _alert(
                    WARNING,
                    "certificate",
                    domain,
                    f"The last renewal ({_when(cert.get('last_renewal_run'), now)}) failed{left}. "
                    "logs/certbot.log says why; see the certificate runbook.",
                )
            )
        if cert.get("covers_domain") is False:
            alerts.append(
                _alert(WARNING, "certificate", domain, "The certificate does not name this domain.")
            )
    return alerts


# certbot runs twice a day: a last run older than this means at least two were missed.
RENEWAL_STALE_S = 26 * 3600


def _certificate_renewal(renewal: dict[str, Any] | None, now: float) -> list[dict[str, str]]:
    """The renewal job itself: a job that stopped running is how certificates expire
    silently."""
    if renewal is None:  # no ACME CA configured: nothing renews, nothing to watch
        return []
    if renewal.get("error"):
        return [_alert(WARNING, "certificate", "renewal job", renewal["error"])]
    last = parse_utc(renewal.get("last_run_at"))
    if last is None:
        return [_alert(WARNING, "certificate", "renewal job",
                       "The certificate renewal job has never run; is its cron entry installed? "
                       "See the certificate runbook.")]
    if now - last > RENEWAL_STALE_S:
        ran = _when(renewal["last_run_at"], now)
        return [_alert(WARNING, "certificate", "renewal job",
                       f"The certificate renewal job last ran {ran}; it runs twice a day. "
                       "Is cron running?")]
    return []


def _backups(
    backups: dict[str, Any] | None, restore_tests: dict[str, Any] | None, now: float
) -> list[dict[str, str]]:
    alerts = []
    backups = backups or {}
    last, good = backups.get("last"), backups.get("last_good")
    if last is None:
        alerts.append(_alert(CRITICAL, "backup", "backups", "No backup has been recorded."))
    else:
        if last.get("outcome") == "failed":
            alerts.append(
                _alert(
                    CRITICAL,
                    "backup",
                    "backups",
                    f"Last backup failed ({_when(last.get('started_at'), now)}): "
                    f"{last.get('reason') or 'no reason recorded'}.",
                )
            )
        elif last.get("outcome") == "succeeded" and last.get("verified") is not True:
            alerts.append(
                _alert(
                    CRITICAL,
                    "backup",
                    "backups",
                    f"Last backup ({_when(last.get('started_at'), now)}) was not verified.",
                )
            )
        good_at = parse_utc((good or {}).get("finished_at") or (good or {}).get("started_at"))
        if good_at is None or now - good_at > BACKUP_MAX_AGE_S:
            when = _ago(now - good_at) if good_at else "never"
            alerts.append(
                _alert(CRITICAL, "backup", "backups", f"Last good (verified) backup: {when}.")
            )
    restore_tests = restore_tests or {}
    last, good = restore_tests.get("last"), restore_tests.get("last_good")
    if last is None:
        alerts.append(_alert(WARNING, "restore", "restore test", "No restore test recorded yet."))
    else:
        if last.get("outcome") == "failed":
            alerts.append(
                _alert(
                    CRITICAL,
                    "restore",
                    "restore test",
                    f"Last restore test failed ({_when(last.get('started_at'), now)}): "
                    f"{last.get('reason') or 'no reason recorded'}.",
                )
            )
        good_at = parse_utc((good or {}).get("finished_at"))
        if good_at is None or now - good_at > RESTORE_TEST_MAX_AGE_S:
            when = _ago(now - good_at) if good_at else "never"
            alerts.append(
                _alert(WARNING, "restore", "restore test", f"Last successful restore test: {when}.")
            )
    return alerts


def _releases(releases: dict[str, Any] | None, now: float) -> list[dict[str, str]]:
    alerts = []
    for env, view in ((releases or {}).get("by_environment") or {}).items():
        last, live = view.get("last_attempt"), view.get("live")
        if last is None:
            continue
        serving = f" {live['release']} is still serving." if live else ""
        if last.get("failed"):
            reason = f": {last['reason']}" if last.get("reason") else ""
            alerts.append(
                _alert(
                    WARNING,
                    "release",
                    env,
                    f"Release {last.get('release')} {last.get('outcome')} "
                    f"({_when(last.get('started_at'), now)}){reason}.{serving}",
                )
            )
        started = parse_utc(last.get("started_at"))
        if last.get("outcome") == "in_progress" and started and now - started > RELEASE_STUCK_S:
            alerts.append(
                _alert(
                    WARNING,
                    "release",
                    env,
                    f"Release {last.get('release')} in progress since "
                    f"{_ago(now - started)}; it may be stuck.{serving}",
                )
            )
    return alerts


def _host(host: dict[str, Any] | None) -> list[dict[str, str]]:
    if not host:
        return []
    alerts = []
    memory = host.get("memory", {}).get("percent") or 0
    swap = host.get("swap", {}).get("percent") or 0
    disk = host.get("disk", {}).get("percent") or 0
    load = (host.get("load") or [0])[0]
    cores = host.get("cpu", {}).get("count") or 1
    if memory >= 90:
        alerts.append(_alert(WARNING, "host", "memory", f"Memory {memory:.0f} % used."))
    if swap >= 80:
        alerts.append(
            _alert(
                CRITICAL,
                "host",
                "swap",
                f"Swap {swap:.0f} % used: the host is thrashing or about to kill processes.",
            )
        )
    elif swap >= 50:
        alerts.append(_alert(WARNING, "host", "swap", f"Swap {swap:.0f} % used."))
    if disk >= 95:
        alerts.append(_alert(CRITICAL, "host", "disk", f"Disk {disk:.0f} % full."))
    elif disk >= 85:
        alerts.append(_alert(WARNING, "host", "disk", f"Disk {disk:.0f} % full."))
    reboot = host.get("reboot_required")
    if reboot:
        packages = ", ".join(reboot.get("packages") or []) or "an update"
        alerts.append(
            _alert(
                WARNING,
                "host",
                "reboot",
                f"Reboot required since {reboot.get('since')} for {packages}: installed, not "
                "running until the host restarts (host.provision.automatic_reboot, or now).",
            )
        )
    if load > 2 * cores:
        alerts.append(
            _alert(
                WARNING,
                "host",
                "load",
                f"Load {load:.1f} on {cores} CPU(s): the host is overloaded.",
            )
        )
    return alerts


def _access_log(access: dict[str, Any] | None) -> list[dict[str, str]]:
    if not access:
        return []
    alerts = []
    if access.get("present") is False:
        alerts.append(
            _alert(
                WARNING, "errors", "access log", f"{access.get('path')} is missing: no error rates."
            )
        )
    if (access.get("malformed_lines_1h") or 0) > 10:
        alerts.append(
            _alert(
                WARNING,
                "errors",
                "access log",
                f"{access['malformed_lines_1h']} malformed lines in the last hour: "
                "is nginx still using the aiia_json log format?",
            )
        )
    return alerts


def _notifications(notifications: dict[str, Any] | None) -> list[dict[str, str]]:
    """A channel that cannot deliver (its messages wait, retried with back-off)."""
    if not notifications:
        return []
    found = []
    for channel in notifications.get("channels") or []:
        if channel.get("last_error"):
            waiting = channel.get("pending", 0)
            found.append(_alert(
                WARNING, "notify", channel["name"],
                f"Alerts to {channel['name']} ({channel['kind']}) are not getting through: "
                f"{channel['last_error']}. {waiting} waiting, next try "
                f"{channel.get('next_attempt_at') or 'with the next alert'}."))
    beat = notifications.get("heartbeat") or {}
    if beat.get("last_error"):
        found.append(_alert(
            WARNING, "notify", "heartbeat",
            f"The heartbeat ping fails ({beat['last_error']}): the outside monitor will report"
            " this host as down."))
    return found

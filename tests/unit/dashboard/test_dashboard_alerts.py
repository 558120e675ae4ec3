"""What the top of the page says needs attention, and how bad it is."""

from __future__ import annotations

import copy

import pytest

from dashboard.alerts import evaluate, overall
from dashboard.timestamps import format_utc

NOW = 1_800_000_000.0


def healthy() -> dict:
    """A status document where nothing needs attention."""
    service = {
        "name": "postgres",
        "configured": True,
        "container": "aiia-postgres",
        "state": "running",
        "health": "healthy",
        "restarts": 0,
        "exit_code": None,
        "oom_killed": False,
        "started_at": format_utc(NOW - 86400),
        "memory_percent": 40.0,
    }
    window = {"requests": 1000, "errors_5xx": 1, "share_percent": 0.1}
    return {
        "collected_at": format_utc(NOW - 30),
        "collector": {"every_s": 60, "errors": []},
        "services": [service],
        "environments": [
            {
                "name": "prod",
                "probe": {"ok": True, "at": format_utc(NOW - 30)},
                "uptime": {"24h": {"percent": 100.0, "coverage_percent": 100.0}},
                "errors": {"5m": dict(window), "1h": dict(window)},
            }
        ],
        "certificates": [
            {
                "domain": "prod.example.com",
                "days_left": 60.0,
                "error": None,
                "covers_domain": True,
                "not_after": "2027-03-01T00:00:00Z",
            }
        ],
        "backups": {
            "last": {
                "outcome": "succeeded",
                "verified": True,
                "started_at": format_utc(NOW - 3600),
            },
            "last_good": {"finished_at": format_utc(NOW - 3500)},
        },
        "restore_tests": {
            "last": {"outcome": "succeeded", "started_at": format_utc(NOW - 9 * 86400)},
            "last_good": {"finished_at": format_utc(NOW - 9 * 86400)},
        },
        "releases": {
            "by_environment": {
                "prod": {
                    "last_attempt": {
                        "release": "r2",
                        "outcome": "succeeded",
                        "failed": False,
                        "started_at": format_utc(NOW - 7200),
                    },
                    "live": {"release": "r2"},
                }
            }
        },
        "host": {
            "memory": {"percent": 60},
            "swap": {"percent": 5},
            "disk": {"percent": 40},
            "load": [0.3, 0.2, 0.1],
            "cpu": {"count": 2},
        },
        "access_log": {"present": True, "malformed_lines_1h": 0},
    }


def alerts_after(change) -> list[dict]:
    document = copy.deepcopy(healthy())
    change(document)
    return evaluate(document, NOW)


def only(alerts, severity, area, words):
    matching = [a for a in alerts if a["area"] == area]
    assert len(matching) == 1, alerts
    assert matching[0]["severity"] == severity
    for word in words:
        assert word in matching[0]["message"], matching[0]["message"]


def test_nothing_needs_attention_on_a_healthy_host():
    assert evaluate(healthy(), NOW) == []
    assert overall([]) == "ok"


@pytest.mark.parametrize(
    ("days", "severity"), [(13.5, "warning"), (6.9, "critical"), (-1, "critical")]
)
def test_certificate_expiry(days, severity):
    alerts = alerts_after(lambda d: d["certificates"][0].update(days_left=days))
    only(alerts, severity, "certificate", [])
    assert overall(alerts) == severity


def test_certificate_with_fourteen_days_or_more_is_fine():
    assert alerts_after(lambda d: d["certificates"][0].update(days_left=14.2)) == []


def acme(d, outcome="renewed-or-not-due", ran_ago=3600, **certificate):
    """The healthy host on an ACME CA: the last certbot run `ran_ago` seconds ago."""
    d["certificate_renewal"] = {"last_run_at": format_utc(NOW - ran_ago), "error": None,
                                "domains": {"prod.example.com": outcome}}
    d["certificates"][0].update({"acme": True, "issued": True, "renewal_outcome": outcome,
                                 "last_renewal_run": format_utc(NOW - ran_ago), **certificate})


def test_an_issued_certificate_renewed_on_time_is_fine():
    assert alerts_after(acme) == []


def test_a_domain_still_on_its_bootstrap_certificate_is_critical_not_yet_issued():
    alerts = alerts_after(lambda d: acme(d, "not-issued", issued=False, self_signed=True))
    only(alerts, "critical", "certificate", ["Not yet issued", "bootstrap", "DNS"])


def test_a_failed_renewal_warns_with_the_days_left_before_expiry_alerts_would():
    alerts = alerts_after(lambda d: acme(d, "renewal-failed", days_left=25.2))
    only(alerts, "warning", "certificate", ["renewal", "failed", "25 days left", "certbot.log"])


@pytest.mark.parametrize("ran_ago", [27 * 3600, None])
def test_a_renewal_job_that_stopped_running_or_never_ran_warns(ran_ago):
    def change(d):
        acme(d)
        if ran_ago is None:
            d["certificate_renewal"]["last_run_at"] = None
        else:
            d["certificate_renewal"]["last_run_at"] = format_utc(NOW - ran_ago)
    alerts = alerts_after(change)
    only(alerts, "warning", "certificate", ["renewal job", "never run" if ran_ago is None
                                           else "twice a day"])
    assert alerts[0]["subject"] == "renewal job"


def test_self_signed_mode_expects_no_issuance_and_no_renewal_job():
    alerts = alerts_after(lambda d: d["certificates"][0].update(self_signed=True, issued=None))
    assert alerts == []


def test_failed_backup_is_critical_with_its_reason():
    def fail(d):
        d["backups"]["last"] = {
            "outcome": "failed",
            "reason": "gpg: no public key",
            "started_at": format_utc(NOW - 3600),
        }

    alerts = alerts_after(fail)
    assert alerts[0]["severity"] == "critical"
    assert "gpg: no public key" in alerts[0]["message"]


def test_unverified_or_old_backup_is_critical():
    only(
        alerts_after(lambda d: d["backups"]["last"].update(verified=False)),
        "critical",
        "backup",
        ["not verified"],
    )
    only(
        alerts_after(
            lambda d: d["backups"]["last_good"].update(finished_at=format_utc(NOW - 30 * 3600))
        ),
        "critical",
        "backup",
        ["30 h ago"],
    )
    only(
        alerts_after(lambda d: d.update(backups={"last": None})),
        "critical",
        "backup",
        ["No backup"],
    )


def test_restore_test_failed_or_overdue():
    only(
        alerts_after(
            lambda d: d["restore_tests"]["last"].update(outcome="failed", reason="role missing")
        ),
        "critical",
        "restore",
        ["role missing"],
    )
    only(
        alerts_after(
            lambda d: d["restore_tests"]["last_good"].update(
                finished_at=format_utc(NOW - 40 * 86400)
            )
        ),
        "warning",
        "restore",
        ["40 days"],
    )


def test_failed_release_names_what_still_serves():
    def fail(d):
        d["releases"]["by_environment"]["prod"]["last_attempt"] = {
            "release": "r3",
            "outcome": "failed_health_check",
            "failed": True,
            "reason": "unhealthy after 120 s",
            "started_at": format_utc(NOW - 600),
        }

    only(alerts_after(fail), "warning", "release", ["r3", "failed_health_check", "r2 is still"])


def test_release_stuck_in_progress():
    def stuck(d):
        d["releases"]["by_environment"]["prod"]["last_attempt"].update(
            outcome="in_progress", started_at=format_utc(NOW - 3600)
        )

    only(alerts_after(stuck), "warning", "release", ["may be stuck"])


def test_stale_collector_is_critical_and_says_what_is_stale():
    alerts = alerts_after(lambda d: d.update(collected_at=format_utc(NOW - 600)))
    only(alerts, "critical", "collector", ["10 min ago", "stale"])
    only(
        alerts_after(lambda d: d.update(collected_at=None)),
        "critical",
        "collector",
        ["No collection yet"],
    )


def test_docker_unreachable_is_one_critical_alert_not_one_per_service():
    def unreachable(d):
        d["collector"]["errors"] = [{"step": "docker", "message": "connection refused"}]
        d["services"] = [
            {"name": n, "configured": True, "state": "unknown"}
            for n in ("postgres", "redis", "nginx")
        ]

    alerts = alerts_after(unreachable)
    assert [(a["severity"], a["area"]) for a in alerts] == [("critical", "collector")]


@pytest.mark.parametrize(
    ("change", "severity", "words"),
    [
        (
            {"state": "exited", "exit_code": 137, "oom_killed": True},
            "critical",
            ["exited", "137", "out of memory"],
        ),
        ({"state": "missing", "container": None}, "critical", ["No container"]),
        ({"health": "unhealthy"}, "critical", ["failing"]),
        ({"health": "starting"}, "warning", ["starting"]),
        ({"restarts": 3, "started_at": format_utc(NOW - 300)}, "warning", ["3 times"]),
        ({"memory_percent": 93.0}, "warning", ["93 %"]),
    ],
)
def test_service_problems(change, severity, words):
    only(alerts_after(lambda d: d["services"][0].update(change)), severity, "service", words)


def test_restarts_long_ago_are_not_news():
    assert alerts_after(lambda d: d["services"][0].update(restarts=3)) == []


def test_an_old_release_container_still_running_beside_the_new_one_is_fine():
    def two(d):
        d["services"].append({**d["services"][0], "container": "aiia-app-prod-old"})

    assert alerts_after(two) == []


def test_environment_down_and_error_rates():
    only(
        alerts_after(
            lambda d: d["environments"][0].update(
                probe={
                    "ok": False,
                    "at": format_utc(NOW),
                    "failing_since": "2027-01-01T03:00:00Z",
                    "error": "HTTP 503",
                }
            )
        ),
        "critical",
        "environment",
        ["since 2027-01-01 03:00 UTC", "503"],
    )
    only(
        alerts_after(
            lambda d: d["environments"][0]["errors"]["5m"].update(
                requests=200, errors_5xx=20, share_percent=10.0
            )
        ),
        "critical",
        "errors",
        ["10.0 %"],
    )
    # Two 5xx out of 3 requests is 66 % but not an incident: the hour decides.
    assert (
        alerts_after(
            lambda d: d["environments"][0]["errors"]["5m"].update(
                requests=3, errors_5xx=2, share_percent=66.7
            )
        )
        == []
    )
    only(
        alerts_after(
            lambda d: d["environments"][0]["errors"]["1h"].update(share_percent=2.5, errors_5xx=25)
        ),
        "warning",
        "errors",
        ["2.5 %"],
    )


def test_low_uptime_and_low_coverage():
    only(
        alerts_after(lambda d: d["environments"][0]["uptime"]["24h"].update(percent=98.2)),
        "warning",
        "environment",
        ["98.20 %"],
    )
    only(
        alerts_after(lambda d: d["environments"][0]["uptime"]["24h"].update(coverage_percent=70.0)),
        "warning",
        "environment",
        ["70 %"],
    )


def test_host_pressure():
    only(
        alerts_after(lambda d: d["host"]["disk"].update(percent=96)),
        "critical",
        "host",
        ["Disk 96 %"],
    )
    only(
        alerts_after(lambda d: d["host"]["swap"].update(percent=85)),
        "critical",
        "host",
        ["Swap 85 %"],
    )
    only(
        alerts_after(lambda d: d["host"].update(load=[5.0, 1, 1])), "warning", "host", ["Load 5.0"]
    )


def test_critical_alerts_come_first():
    def several(d):
        d["certificates"][0]["days_left"] = 10
        d["backups"]["last"]["verified"] = False

    alerts = alerts_after(several)
    # The certificate rule runs before the backup rule; the critical backup still leads.
    assert [(a["severity"], a["area"]) for a in alerts] == [
        ("critical", "backup"),
        ("warning", "certificate"),
    ]


def test_an_unreadable_snapshot_is_critical_and_says_how_to_fix_it():
    alerts = alerts_after(
        lambda d: d.update(
            snapshot_error="cannot read /srv/aiia/state/dashboard/status.json: Permission denied"
        )
    )
    only(alerts, "critical", "collector", ["Permission denied", "2750"])


def test_times_in_messages_read_at_a_glance():
    def failing(d):
        d["environments"][0]["probe"] = {
            "ok": False,
            "at": format_utc(NOW),
            "failing_since": format_utc(NOW - 300),
            "error": "x",
        }

    only(alerts_after(failing), "critical", "environment", ["since 07:55 UTC, 5 min ago"])


def test_the_newest_good_backup_alerts_past_26_hours_not_before():
    # Daily at a fixed time: 26 h leaves two hours of slack for a slow or late run.
    assert alerts_after(
        lambda d: d["backups"]["last_good"].update(finished_at=format_utc(NOW - 25.9 * 3600))
    ) == []
    only(
        alerts_after(
            lambda d: d["backups"]["last_good"].update(finished_at=format_utc(NOW - 26.1 * 3600))
        ),
        "critical",
        "backup",
        ["Last good (verified) backup: 26 h ago"],
    )


def test_a_failed_backup_after_a_good_one_alerts_with_the_good_one_still_recent():
    def failed_tonight(d):
        d["backups"]["last"] = {"outcome": "failed", "started_at": format_utc(NOW - 600),
                                "reason": "refusing to start: 1024 bytes free"}

    only(alerts_after(failed_tonight), "critical", "backup", ["refusing to start"])


def test_a_failed_drill_alerts_even_when_an_older_one_succeeded():
    def drill_failed(d):
        d["restore_tests"]["last"] = {
            "outcome": "failed", "started_at": format_utc(NOW - 3600),
            "reason": "prod: row counts differ from the manifest: public.notes_note"}

    only(alerts_after(drill_failed), "critical", "restore", ["row counts differ"])


def test_an_environment_in_maintenance_is_a_warning_that_says_how_to_end_it():
    def maintenance(document):
        document["environments"][0]["maintenance"] = True

    only(alerts_after(maintenance), "warning", "environment",
         ["In maintenance", "make maintenance ON=0"])

"""The engine client's error messages: a health wait that times out explains itself."""

from tests.harness.engine import health_log


def test_the_health_log_shows_each_check_exit_code_and_output():
    state = {"Health": {"Status": "unhealthy", "Log": [
        {"Start": "2026-12-03T05:49:42.614765771Z", "ExitCode": 137, "Output": ""},
        {"Start": "2026-12-03T05:49:52.995425148Z", "ExitCode": 1,
         "Output": "last collection 80 s ago (one every 30 s; stale after 75 s)\n"},
    ]}}
    text = health_log(state)
    assert "2026-12-03T05:49:42.614 exit 137: (no output)" in text
    assert "exit 1: last collection 80 s ago" in text


def test_no_health_check_run_yet_is_said_so():
    assert health_log({"Health": {"Status": "starting", "Log": []}}) == "no health check has run"
    assert health_log({}) == "no health check has run"

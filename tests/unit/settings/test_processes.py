"""components/settings/processes.py: releases.<env>.processes (workers, beat) — their names,
commands, checks and limits — and their memory against the platform's reservation."""

import pytest

from components.settings.processes import ProcessSettings
from tests.harness.settings import parse, problems_of

WORKER = "celery -A shop worker -l info --pool solo"


def with_processes(processes, reserved_mb: int = 256):
    def change(raw):
        raw["releases"]["prod"]["processes"] = processes
        raw["platform"]["environments"]["prod"]["processes_memory_mb"] = reserved_mb
        # Room in the 512 MB host for the reservation: staging's app gives it up here.
        raw["host"]["memory_mb"] = 512 + reserved_mb
    return change


def test_a_command_alone_or_an_object_each_become_a_process():
    settings = parse("prod", with_processes({
        "worker": WORKER,
        "beat": {"command": "celery -A shop beat -s /tmp/beat", "memory_mb": 48,
                 "stop_grace_seconds": 10, "check": "test -e /tmp/beat",
                 "settle_seconds": 3}}))
    worker, beat = settings.releases[0].processes
    assert worker == ProcessSettings(name="worker", command=WORKER)
    assert worker.argv == ["celery", "-A", "shop", "worker", "-l", "info", "--pool", "solo"]
    assert (worker.memory_mb, worker.stop_grace_seconds, worker.settle_seconds) == (80, 30, 5)
    assert beat.memory_mb == 48 and beat.stop_grace_seconds == 10
    assert beat.check == "test -e /tmp/beat" and beat.settle_seconds == 3


def test_a_release_without_processes_has_none():
    assert parse("prod").releases[0].processes == ()


@pytest.mark.parametrize("name,expected", [
    ("web", "'web' is taken (the web container); give the process another name"),
    ("app", "'app' is taken (the web container)"),
    ("migrate", "'migrate' is taken (a job of the program)"),
    ("Worker", "'Worker' is not a valid process name (lower-case letters"),
    ("celery_worker", "'celery_worker' is not a valid process name"),
    ("2nd", "'2nd' is not a valid process name"),
    ("w" * 21, f"{'w' * 21!r} is not a valid process name"),
])
def test_a_process_name_that_clashes_or_is_not_a_name_is_refused(name, expected):
    message = problems_of(with_processes({name: WORKER}))
    assert f"aiia:releases.prod.processes.{name}: {expected}" in message


@pytest.mark.parametrize("value", ["", "   ", None, {"memory_mb": 64}, {"command": ""}])
def test_an_empty_command_is_refused(value):
    message = problems_of(with_processes({"worker": value}))
    assert "aiia:releases.prod.processes.worker.command is empty; give the command" in message


def test_a_command_that_does_not_split_like_a_shell_line_is_refused():
    message = problems_of(with_processes({"worker": "celery -A 'shop worker"}))
    assert "aiia:releases.prod.processes.worker.command=\"celery -A 'shop worker\" cannot be " \
        "split like a shell line" in message


@pytest.mark.parametrize("field,value,expected", [
    ("memory_mb", 8, "memory_mb=8 must be between 16 and 4096"),
    ("stop_grace_seconds", 0, "stop_grace_seconds=0 must be between 1 and 3600"),
    ("settle_seconds", 0, "settle_seconds=0 must be between 1 and 120"),
    ("check", " ", "check is empty; give a command that exits 0"),
    ("check", "a\nb", "check holds a line break"),
    ("graceful", 3, "graceful is not a setting"),
])
def test_a_process_setting_out_of_range_is_refused(field, value, expected):
    message = problems_of(with_processes({"worker": {"command": WORKER, field: value}}))
    assert f"aiia:releases.prod.processes.worker.{expected}" in message


def test_processes_is_a_mapping_of_names():
    message = problems_of(with_processes([WORKER]))
    assert "aiia:releases.prod.processes=" in message and "must map a process name" in message


def test_processes_over_the_platforms_reservation_are_refused_naming_both_keys():
    message = problems_of(with_processes(
        {"worker": {"command": WORKER, "memory_mb": 96}, "beat": "celery -A shop beat"},
        reserved_mb=128))
    assert ("aiia:releases.prod.processes need 176 MB together (worker 96 MB, beat 80 MB) "
            "but the platform reserves 128 MB for them (aiia:platform.environments.prod."
            "processes_memory_mb") in message
    assert "raise that on the platform's stack or lower a process's memory_mb" in message


def test_the_reservation_is_in_the_memory_budget_steady_and_during_a_release():
    budget = parse("prod", with_processes({"worker": WORKER}, reserved_mb=96)).budget
    shares = {share.service: share.memory_mb for share in budget.steady}
    assert shares["processes prod"] == 96
    assert {share.service: share.memory_mb for share in budget.release_extra}[
        "new release of processes prod"] == 96
    assert parse("prod").budget.steady_mb + 96 == budget.steady_mb


def test_a_reservation_past_the_host_is_refused_by_the_budget():
    def change(raw):
        with_processes({"worker": WORKER}, reserved_mb=96)(raw)
        raw["host"]["memory_mb"] = 512
    message = problems_of(change)
    assert "memory budget: steady use 608 MB exceeds aiia:host.memory_mb=512" in message
    assert "processes prod" in message

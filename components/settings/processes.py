"""`releases.<env>.processes`: the release's other processes (a Celery worker, beat, …), each a
command run from the release's image beside its web container, released and rolled back with
it (components/release/processes.py).

    processes:
      worker: celery -A shop worker -l info          # the command alone
      beat: {command: celery -A shop beat, memory_mb: 64, stop_grace_seconds: 10}

Standard library only, like releases.py, which calls `parse_processes` for each release."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.settings.checks import Problems, typed_fields

# A part of a container name and of a Pulumi resource name: lower case, digits and '-'.
PROCESS_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}(?<!-)$")
# Names the program's own containers and jobs go by: the web container is the release's
# `app` (its `web` in a Procfile), its jobs `app-job` and `app-exec`.
RESERVED_PROCESS_NAMES = ("web", "app", "job", "exec", "migrate", "release")


@dataclass(frozen=True)
class ProcessSettings:
    """One process of a release: `command` is run as the container's argv (split like a
    shell line, no shell: the process is PID 1 and gets the SIGTERM), as Kamal runs a role's
    `cmd`. Write `sh -c '…'` for a shell."""

    name: str
    command: str
    memory_mb: int = 80
    # Its own SIGTERM→SIGKILL, when the release after it takes over (a Celery worker
    # finishes the task it is running before it exits).
    stop_grace_seconds: int = 30
    # The check that gates the web switch: the container must be running, PID 1 unrestarted
    # for settle_seconds (Kamal's readiness_delay for roles without a health check), and —
    # when `check` is set — that shell command, run in the container, must exit 0.
    settle_seconds: int = 5
    check: str | None = None
    check_timeout_seconds: int = 10

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)


def parse_processes(raw: Any, key: str, problems: Problems) -> tuple[ProcessSettings, ...]:
    """`raw`: releases.<env>.processes; `key`: aiia:releases.<env>."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.add(f"{key}.processes={raw!r} must map a process name to its command, e.g. "
                     "{worker: celery -A proj worker -l info}")
        return ()
    processes = []
    for name, value in raw.items():
        process = _parse_process(name, value, f"{key}.processes.{name}", problems)
        if process is not None:
            processes.append(process)
    return tuple(processes)


def _parse_process(name: Any, value: Any, full: str,
                   problems: Problems) -> ProcessSettings | None:
    if not isinstance(name, str) or not PROCESS_NAME_RE.match(name):
        problems.add(f"{full}: {name!r} is not a valid process name (lower-case letters, "
                     "digits and '-', starting with a letter, at most 20), e.g. worker")
        return None
    if name in RESERVED_PROCESS_NAMES:
        taken = "the web container" if name in ("web", "app") else "a job of the program"
        problems.add(f"{full}: {name!r} is taken ({taken}); give the process another name, "
                     "e.g. worker")
        return None
    values = value if isinstance(value, Mapping) else {"command": value}
    values = typed_fields(ProcessSettings, values, full.split(":", 1)[1], problems)
    values.pop("name", None)
    command = values.pop("command", None)
    if not isinstance(command, str) or not command.strip():
        problems.add(f"{full}.command is empty; give the command the process runs, e.g. "
                     "celery -A proj worker -l info")
        return None
    process = ProcessSettings(name=name, command=command, **values)
    _check_process(process, full, problems)
    return process


def _check_process(process: ProcessSettings, full: str, problems: Problems) -> None:
    for text, field in ((process.command, "command"), (process.check or "", "check")):
        if "\n" in text or "\r" in text:
            problems.add(f"{full}.{field} holds a line break; give it on one line")
    try:
        process.argv  # noqa: B018 - splitting is the check
    except ValueError as error:
        problems.add(f"{full}.command={process.command!r} cannot be split like a shell line "
                     f"({error}); close its quotes")
    if process.check is not None and not process.check.strip():
        problems.add(f"{full}.check is empty; give a command that exits 0 when the process "
                     "works, or leave check out")
    for field, low, high in (("memory_mb", 16, 4096), ("stop_grace_seconds", 1, 3600),
                             ("settle_seconds", 1, 120), ("check_timeout_seconds", 1, 60)):
        value = getattr(process, field)
        if not low <= value <= high:
            problems.add(f"{full}.{field}={value} must be between {low} and {high}")


def processes_memory_mb(processes: tuple[ProcessSettings, ...]) -> int:
    """What a release's processes may use together (each its own limit)."""
    return sum(process.memory_mb for process in processes)


def processes_over_reservation(release: Any, reserved_mb: int | None) -> str | None:
    """The problem when a release's processes add up to more than the platform reserved for
    its environment (platform.environments.<env>.processes_memory_mb), else None.
    `release`: a ReleaseSettings (not imported: releases.py imports this module)."""
    needed = processes_memory_mb(release.processes)
    reserved = int(reserved_mb or 0)
    if needed <= reserved:
        return None
    env = release.environment
    shares = ", ".join(f"{process.name} {process.memory_mb} MB" for process in release.processes)
    return (f"aiia:releases.{env}.processes need {needed} MB together ({shares}) but the "
            f"platform reserves {reserved} MB for them (aiia:platform.environments.{env}."
            f"processes_memory_mb, counted in the host's memory budget); raise that on the "
            f"platform's stack or lower a process's memory_mb")

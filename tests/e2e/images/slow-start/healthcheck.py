#!/usr/bin/env python3
"""Test variant (tests/e2e/images/slow-start): unhealthy while the container is younger than
SLOW_START_SECONDS (the age of its PID 1), then the app's own health check."""

import os
import runpy
import sys

SLOW_START_SECONDS = 35


def container_age_seconds() -> float:
    with open("/proc/uptime") as uptime:
        now = float(uptime.read().split()[0])
    with open("/proc/1/stat") as stat:
        # Field 22, after the command in parentheses: start time in clock ticks since boot.
        started = int(stat.read().rsplit(")", 1)[1].split()[19])
    return now - started / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    age = container_age_seconds()
    if age < SLOW_START_SECONDS:
        print(f"healthcheck: still starting ({age:.0f} of {SLOW_START_SECONDS} s)",
              file=sys.stderr)
        sys.exit(1)
    runpy.run_path("/app/app_healthcheck.py", run_name="__main__")

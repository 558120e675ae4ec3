"""Host numbers from psutil: CPU, memory, swap, disk, load. Needs no privilege.

Imported by the server: keep it free of SQLite and the Docker client (memory budget).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil

from .integrity import last_check
from .timestamps import format_utc


def cpu_counters() -> tuple[float, float]:
    """Cumulative (busy, total) CPU seconds over all cores, for averages between two runs."""
    times = psutil.cpu_times()
    total = sum(times)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def disk_path(root_dir: Path) -> str:
    """The filesystem holding the project's data (falls back to / before it exists)."""
    return str(root_dir) if root_dir.exists() else "/"


# Made by a package that needs a reboot to take effect (Debian: the kernel's postinst hook of
# unattended-upgrades, /etc/kernel/postinst.d/unattended-upgrades), with the packages listed
# in the .pkgs beside it; gone after the reboot (/run is a tmpfs). World-readable.
REBOOT_REQUIRED = Path("/run/reboot-required")


def reboot_required(marker: Path = REBOOT_REQUIRED) -> dict[str, Any] | None:
    """Since when a reboot is needed, and for which packages; None when it is not."""
    try:
        since = marker.stat().st_mtime
    except OSError:
        return None
    try:
        packages = marker.with_name(marker.name + ".pkgs").read_text(encoding="utf-8").split()
    except OSError:
        packages = []
    return {"since": format_utc(since), "packages": sorted(set(packages))}


def live_host(root_dir: Path) -> dict[str, Any]:
    """Numbers for the page right now. CPU % is the average since the previous call."""
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    path = disk_path(root_dir)
    disk = psutil.disk_usage(path)
    boot = psutil.boot_time()
    return {
        "hostname": socket.gethostname(),
        "uptime_s": int(time.time() - boot),
        "cpu": {"percent": psutil.cpu_percent(interval=None), "count": psutil.cpu_count() or 1},
        "load": [round(value, 2) for value in os.getloadavg()],
        "memory": {
            "total_bytes": memory.total,
            "used_bytes": memory.total - memory.available,
            "available_bytes": memory.available,
            "percent": round(100.0 * (memory.total - memory.available) / memory.total, 1),
        },
        "swap": {"total_bytes": swap.total, "used_bytes": swap.used, "percent": swap.percent},
        "reboot_required": reboot_required(),
        "integrity": last_check(),
        "disk": {
            "path": path,
            "total_bytes": disk.total,
            "used_bytes": disk.used,
            "free_bytes": disk.free,
            "percent": disk.percent,
        },
    }

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


def cpu_counters() -> tuple[float, float]:
    """Cumulative (busy, total) CPU seconds over all cores, for averages between two runs."""
    times = psutil.cpu_times()
    total = sum(times)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def disk_path(root_dir: Path) -> str:
    """The filesystem holding the project's data (falls back to / before it exists)."""
    return str(root_dir) if root_dir.exists() else "/"


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
        "disk": {
            "path": path,
            "total_bytes": disk.total,
            "used_bytes": disk.used,
            "free_bytes": disk.free,
            "percent": disk.percent,
        },
    }

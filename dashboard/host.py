"""Host numbers from psutil: CPU, memory, swap, disk, load. Needs no privilege."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil

from .store import HostSample


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


def sample(root_dir: Path, now: int, previous: HostSample | None) -> HostSample:
    """One history point; CPU % averages over the time since the previous collection."""
    busy, total = cpu_counters()
    cpu_percent = None
    if previous is not None and total > previous.cpu_total_s and busy >= previous.cpu_busy_s:
        cpu_percent = round(
            100.0 * (busy - previous.cpu_busy_s) / (total - previous.cpu_total_s), 1
        )
    memory = psutil.virtual_memory()
    return HostSample(
        ts=now,
        cpu_percent=cpu_percent,
        memory_percent=round(100.0 * (memory.total - memory.available) / memory.total, 1),
        swap_percent=psutil.swap_memory().percent,
        disk_percent=psutil.disk_usage(disk_path(root_dir)).percent,
        load1=round(os.getloadavg()[0], 2),
        cpu_busy_s=busy,
        cpu_total_s=total,
    )

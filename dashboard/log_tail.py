"""The last lines of a log file, read backwards from its end (a log can be 50 MB)."""

from __future__ import annotations

import os
from pathlib import Path

BLOCK_BYTES = 8192


def tail_lines(path: Path, count: int, max_bytes: int = 1 << 20) -> list[str]:
    with open(path, "rb") as handle:
        end = os.fstat(handle.fileno()).st_size
        position, data = end, b""
        while position > 0 and data.count(b"\n") <= count and end - position < max_bytes:
            step = min(BLOCK_BYTES, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    if position > 0 and lines:
        lines = lines[1:]  # the first line is cut where the read began
    return lines[-count:]

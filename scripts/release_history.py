"""`make releases`: the host's release history (releases.jsonl) as a table, oldest first.

    python3 -m scripts.release_history [--environment prod] [--limit 20] < releases.jsonl

One row per release attempt: the file gets a line when an attempt starts (`in_progress`) and
another when it ends, and the latest line of an attempt's `id` wins (docs/architecture.md,
"File formats"). The newest `succeeded` attempt of each environment is marked `serving`: a
release that failed or was switched back never took traffic from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable

COLUMNS = ("started_at", "environment", "release", "outcome", "previous_release", "reason")
HEADINGS = ("STARTED", "ENV", "RELEASE", "OUTCOME", "PREVIOUS", "REASON")


def attempts(lines: Iterable[str]) -> list[dict]:
    """One record per attempt, in the order the attempts began; unreadable lines skipped."""
    latest: dict[str, dict] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("id"):
            latest[str(record["id"])] = record
    return list(latest.values())


def serving_ids(records: list[dict]) -> set[str]:
    """The newest succeeded attempt of each environment."""
    newest = {record.get("environment"): record["id"] for record in records
              if record.get("outcome") == "succeeded"}
    return set(newest.values())


def table(records: list[dict], serving: set[str]) -> str:
    rows = [HEADINGS]
    for record in records:
        cells = [str(record.get(column) or "-") for column in COLUMNS]
        if record["id"] in serving:
            cells[3] += " (serving)"
        rows.append(tuple(cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                        strict=True)).rstrip()
                     for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environment", help="this environment's releases only")
    parser.add_argument("--limit", type=int, default=20, help="the newest N (default 20)")
    args = parser.parse_args(argv)
    records = [record for record in attempts(sys.stdin)
               if args.environment in (None, record.get("environment"))]
    if not records:
        print("no release recorded" + (f" for {args.environment}" if args.environment else ""),
              file=sys.stderr)
        return 1
    print(table(records[-args.limit:], serving_ids(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The PostgreSQL major of a stack's data directory, and the image that must match it.

A PostgreSQL server starts only on a data directory of its own major; moving to another
major is a dump and restore (`make pg-upgrade`, docs/runbooks.md). So the stack file says
which major its data directory holds (`aiia:platform.postgres.data_major`) and a server
image of another major is refused at preview, before anything is stopped.

Standard library only: scripts/pg_upgrade.py reads the same rules.
"""

from __future__ import annotations

import re

from components.settings.checks import IMAGE_REFERENCE_RE, NAMESPACE, Problems

# Every data directory this program made before `data_major` existed is PostgreSQL 15 (the
# only major it shipped), so a stack file without the key is a stack on 15: an existing
# stack that never set it is refused a 17 image rather than given an empty 17 cluster.
LEGACY_DATA_MAJOR = 15
# postgres:17.12-trixie → 17 (the official image's tags are <major>.<minor>[-<suite>]).
_TAG_MAJOR_RE = re.compile(r"^(\d+)(?:\.|$|-)")
UPGRADE_RUNBOOK = 'docs/runbooks.md, "PostgreSQL major upgrade"'


def image_major(reference: str) -> int | None:
    """The PostgreSQL major an image's tag names, or None (no tag, or not a version)."""
    match = IMAGE_REFERENCE_RE.match(reference)
    tag = match["tag"] if match else None
    major = _TAG_MAJOR_RE.match(tag) if tag else None
    return int(major.group(1)) if major else None


def data_directory(major: int) -> str:
    """PGDATA's folder in the data volume for a cluster of `major`.

    15's is `pgdata`, where every stack before majors were tracked keeps it; any other
    major's is `pgdata-<major>`, so that an upgrade builds the new cluster beside the old
    one in the same (protected) volume, and the old stays untouched for a rollback."""
    return "pgdata" if major == LEGACY_DATA_MAJOR else f"pgdata-{major}"


def check_data_major(image: str, data_major: int | None, problems: Problems) -> None:
    """`images.postgres` must be a server of the data directory's major."""
    key = f"{NAMESPACE}:platform.images.postgres"
    recorded = LEGACY_DATA_MAJOR if data_major is None else data_major
    if not 9 < recorded < 100:
        problems.add(f"{NAMESPACE}:platform.postgres.data_major={data_major} is not a "
                     "PostgreSQL major; it is the major of the stack's data directory "
                     "(the PG_VERSION file in it), e.g. 17")
        return
    major = image_major(image)
    if major is None:
        problems.add(f"{key}={image!r} has no version tag, so its PostgreSQL major cannot be "
                     f"checked against the data directory's ({recorded}); name the tag with "
                     "the digest, e.g. postgres:17.12-trixie@sha256:…")
        return
    if major == recorded:
        return
    how_set = ("aiia:platform.postgres.data_major is unset: a stack made before the key "
               f"existed, whose data directory is PostgreSQL {LEGACY_DATA_MAJOR}"
               if data_major is None else f"aiia:platform.postgres.data_major={data_major}")
    stay = f"to stay on {recorded}, set {key} back to a PostgreSQL {recorded} image"
    if major < recorded:
        fix = (f"a cluster never moves to an older major (that is a restore of a backup "
               f"made on {major}); {stay}")
    else:
        fix = (f"to upgrade, keeping every row and password: `make pg-upgrade "
               f"STACK={problems.stack} TO={image}` ({UPGRADE_RUNBOOK}); {stay}; a new stack "
               f"with no data yet: set {NAMESPACE}:platform.postgres.data_major: {major}")
    problems.add(f"{key}={image!r} is PostgreSQL {major}, but this stack's data directory is "
                 f"PostgreSQL {recorded} ({how_set}); a server never starts on another "
                 f"major's data, and the program does not upgrade one by surprise. {fix}")

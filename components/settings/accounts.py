"""Whose files are whose on the host: the uids the platform's images run as (the owners of
their data), and the fixed uid of an account the program creates (the dashboard's).

Standard library only, like the other settings modules."""

from __future__ import annotations

from components.settings.checks import NAMESPACE, Problems

# The uids the platform's images run as, so the owners of their files on the host
# (PostgreSQL's data and superuser password, Redis's config, PgBouncer's userlist).
DATA_OWNER_UIDS = {"postgres": 999, "redis": 999, "pgbouncer": 70}
# Where a fixed uid of an account the program creates may lie: Debian's range for normal
# accounts (Debian Policy 9.2.2). useradd --system takes the highest free uid below 1000,
# which is how the dashboard's account came to share 999 with PostgreSQL and Redis.
FIXED_UID_RANGE = (1000, 59999)


def data_owner(service: str) -> str:
    """The uid:gid a platform service's container runs as and its host files belong to."""
    uid = DATA_OWNER_UIDS[service]
    return f"{uid}:{uid}"


def check_dashboard_uids(uids: dict[str, int], problems: Problems) -> None:
    """platform.dashboard.uid and .collector_uid: fixed uids of their own, out of the system
    range the data owners' uids are in, and not each other's (the server must not own, nor
    be able to signal, what the collector runs and writes)."""
    low, high = FIXED_UID_RANGE
    for key, uid in uids.items():
        if not low <= uid <= high:
            owners = ", ".join(f"{service} {owner}" for service, owner in DATA_OWNER_UIDS.items())
            default = {"uid": 10002, "collector_uid": 10003}[key]
            problems.add(f"{NAMESPACE}:platform.dashboard.{key}={uid} must be a fixed uid "
                         f"between {low} and {high}, outside the system range where the "
                         f"platform's data owners are ({owners}) and where useradd would "
                         f"pick one; the default is {default}")
    if uids["uid"] == uids["collector_uid"]:
        problems.add(f"{NAMESPACE}:platform.dashboard.collector_uid={uids['collector_uid']} "
                     "is the server's uid (platform.dashboard.uid): the collector needs an "
                     "account of its own; give one of them another uid")

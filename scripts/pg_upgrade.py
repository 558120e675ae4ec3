"""A PostgreSQL major upgrade of a stack: its cluster dumped and restored into a new cluster of
the new major, checked, then switched to by the stack file and `pulumi up`
(docs/runbooks.md, "PostgreSQL major upgrade").

    python3 -m scripts.pg_upgrade --stack prod --to postgres:17.12-trixie    # make pg-upgrade

1. The new major's cluster starts beside the serving one, in the same data volume (its own
   folder, pgdata-<major>), from a one-off container with no network. The apps still write.
2. The window: the environments' databases become read-only (reads are still served), every
   table's rows are counted, roles and databases are copied (scripts/pg_cluster.py), and the
   copy is checked: the same rows in every table, the same roles with the same password
   verifiers, the same owners and rights. Anything else stops here: the databases are made
   writable again and the new folder removed; the old cluster never stopped serving.
3. The switch, last: the stack file's images.postgres and postgres.data_major are committed
   and `pulumi up` replaces the server container by one of the new major on the new folder.
   If that fails, the commit is reverted and `pulumi up` brings the old server back on its
   untouched folder. The window ends when the new server takes writes; its length is printed.

The old folder stays in the volume after a success, frozen read-only as it was at the switch:
going back is a revert of the commit, `make up` and its databases made writable again, losing
what was written since (the runbook); remove it once the new major is trusted.
Exit codes: 0 upgraded, 1 failed (the old cluster serves), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from components.settings.checks import Problems, check_image
from components.settings.platform import ImageSettings
from components.settings.postgres import LEGACY_DATA_MAJOR, image_major
from scripts.pg_cluster import (
    DATABASE_RIGHTS_SQL,
    ROLES_SQL,
    Cluster,
    Docker,
    NewCluster,
    UpgradeError,
    copy_cluster,
    wait_until,
)
from scripts.release import pulumi_up
from scripts.stack_file import (
    DeliveryError,
    commit_stack_file,
    config_of,
    git,
    refuse_uncommitted,
    stack_path,
    value_of,
    with_value,
)


@dataclass(frozen=True)
class Plan:
    prefix: str  # the stack's aiia:prefix: its containers' and volume's names
    image: str  # the new major's image, as the host's engine names it
    major: int

    @property
    def serving(self) -> str:
        return f"{self.prefix}-postgres"

    @property
    def volume(self) -> str:
        return f"{self.prefix}-postgres-data"


@dataclass(frozen=True)
class Report:
    old_major: int
    new_major: int
    rows: dict[str, int]
    roles: int
    copy_seconds: float  # from read-only to the copy checked
    downtime_seconds: float  # from read-only to the new server taking writes

    def lines(self) -> list[str]:
        return [f"PostgreSQL {self.old_major} → {self.new_major}: {sum(self.rows.values())} "
                f"rows in {len(self.rows)} tables and {self.roles} roles kept",
                f"writes refused for {self.downtime_seconds:.1f} s (the copy "
                f"{self.copy_seconds:.1f} s, the switch the rest); reads served throughout "
                "but while the server was replaced"]


def differences(what: str, before: object, after: object) -> list[str]:
    """What the new cluster lacks or has more of than the old, one line per item."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        return [f"{what} {key}: {before.get(key)} before, {after.get(key)} after"
                for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    old, new = set(before), set(after)  # rows of a query
    return ([f"{what} only before: {row[0]}" for row in sorted(old - new)]
            + [f"{what} only after: {row[0]}" for row in sorted(new - old)])


def upgrade(docker: Docker, plan: Plan, switch: Callable[[], None],
            say: Callable[[str], None] = print) -> Report:
    """Steps 1–3 of the module's docstring; `switch` is step 3's stack-file change and up."""
    old = Cluster(docker, plan.serving)
    try:
        old_major, old_folder = old.major(), old.data_directory()
    except UpgradeError as error:
        raise UpgradeError(f"no serving PostgreSQL in {plan.serving}: {error}") from error
    if old_major >= plan.major:
        raise UpgradeError(f"{plan.serving} runs PostgreSQL {old_major}; {plan.image} is "
                           f"{plan.major}: an upgrade goes to a newer major")
    new = NewCluster(docker, plan.prefix, plan.image, plan.major)
    if new.folder == old_folder:
        raise UpgradeError(f"the serving cluster is in {old_folder}, the new one's folder")
    databases = old.databases()
    new.discard(plan.volume)  # what a failed attempt left, never the serving folder
    say(f"starting PostgreSQL {plan.major} in {new.folder} beside {old_major} in {old_folder}")
    target = new.start(plan.serving)
    started = time.monotonic()
    say(f"window: {', '.join(databases)} read-only")
    old.set_read_only(databases, read_only=True)
    try:
        rows = old.row_counts(databases)
        roles, rights = old.rows(ROLES_SQL), old.rows(DATABASE_RIGHTS_SQL)
        copy_cluster(old, target, databases)
        problems = (differences("rows of", rows, target.row_counts(databases))
                    + differences("role", roles, target.rows(ROLES_SQL))
                    + differences("database", rights, target.rows(DATABASE_RIGHTS_SQL)))
        if problems:
            raise UpgradeError("the copy differs from the old cluster:\n  "
                               + "\n  ".join(problems))
        new.stop()
        copy_seconds = time.monotonic() - started
        say(f"copied and checked in {copy_seconds:.1f} s: {sum(rows.values())} rows, "
            f"{len(roles)} roles; switching")
        switch()
    except BaseException:
        _abandon(old, new, plan, old_folder, databases, say)
        raise
    serving = Cluster(docker, plan.serving)
    wait_until(lambda: _takes_writes(serving, plan.major, databases),
               f"PostgreSQL {plan.major} taking writes in {plan.serving}")
    return Report(old_major, plan.major, rows, len(roles), copy_seconds,
                  time.monotonic() - started)


def _takes_writes(cluster: Cluster, major: int, databases: list[str]) -> bool:
    try:
        return cluster.major() == major and all(
            cluster.sql("SHOW default_transaction_read_only", database).strip() == "off"
            for database in databases)
    except UpgradeError:
        return False


def _abandon(old: Cluster, new: NewCluster, plan: Plan, old_folder: str,
             databases: list[str], say: Callable[[str], None]) -> None:
    """After a failure: if the old cluster serves, it takes writes again and the new folder
    goes; if the new one serves (the switch went through), nothing is undone."""
    try:
        folder = old.data_directory()
    except UpgradeError:
        say(f"error: no PostgreSQL answers in {plan.serving}: put the previous images.postgres "
            "and postgres.data_major back (git revert) and `make up`, then make the databases "
            "writable (docs/runbooks.md, \"PostgreSQL major upgrade\")")
        return
    if folder != old_folder:
        say(f"the new cluster ({folder}) serves: the switch went through")
        return
    old.set_read_only(databases, read_only=False)
    new.discard(plan.volume)
    say(f"the PostgreSQL {old.major()} cluster in {old_folder} serves and takes writes again; "
        f"{new.folder} removed")


def _switch(stack: str, image: str, major: int) -> Callable[[], None]:
    """Step 3 on a real stack: commit the stack file, `pulumi up`; reverted if up fails."""
    def switch() -> None:
        path = stack_path(stack)
        before = text = path.read_text()
        platform = config_of(before, path.name).get("aiia:platform") or {}
        # Written where the file's value (or the program's default) is another.
        if (platform.get("images") or {}).get("postgres", ImageSettings().postgres) != image:
            text = with_value(text, "platform.images.postgres", image)
        if (platform.get("postgres") or {}).get("data_major", LEGACY_DATA_MAJOR) != major:
            text = with_value(text, "platform.postgres.data_major", major)
        if text == before:  # the file said so already: the up alone switches
            if pulumi_up(stack) != 0:
                raise UpgradeError(f"pulumi up -s {stack} failed (the stack file already "
                                   f"named {image}): the old folder is untouched")
            return
        commit = commit_stack_file(path, text, (
            f"PostgreSQL {major} for stack {stack}: {image}\n\nThe cluster was copied into "
            f"pgdata-{major} and checked by scripts/pg_upgrade.py; the old folder is kept.\n"))
        print(f"committed {commit[:12]}: images.postgres = {image}, data_major = {major}")
        if pulumi_up(stack) == 0:
            return
        git("revert", "--no-edit", commit)
        print(f"pulumi up failed: reverted {commit[:12]}; bringing the old server back")
        if pulumi_up(stack) != 0:
            raise UpgradeError(f"pulumi up -s {stack} failed twice: see its output; the old "
                               "folder is untouched (docs/runbooks.md)")
        raise UpgradeError(f"pulumi up -s {stack} failed with {image}; reverted")
    return switch


def plan_of(stack: str, image: str) -> tuple[Plan, str | None]:
    """The plan and the stack's DOCKER_HOST (None: this machine's engine)."""
    problems = Problems(stack)
    check_image(image, "TO", problems)
    major = image_major(image)
    if problems.items or major is None:
        raise DeliveryError("; ".join(problems.items) or f"TO={image!r} names no major")
    path = stack_path(stack)
    config = config_of(path.read_text(), path.name)
    if not (config.get("aiia:platform") or {}).get("owner"):
        raise DeliveryError(f"stack {stack} does not own the platform: run the upgrade on "
                            "the stack that does (its aiia:platform.owner is true)")
    # The serving cluster's major is checked on the host (upgrade): the stack file may say
    # the new one already (a stack file merged from the shipped one, refused at up).
    refuse_uncommitted(path)
    kind = value_of(config, "host.kind")
    return (Plan(prefix=str(value_of(config, "prefix")), image=image, major=major),
            str(value_of(config, "host.docker_host")) if kind == "ssh" else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--to", required=True, help="the new major's image, pinned")
    args = parser.parse_args(argv)
    try:
        plan, docker_host = plan_of(args.stack, args.to)
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    docker = Docker(docker_host)
    try:
        if docker.run("image", "inspect", plan.image, check=False).returncode != 0:
            docker.run("pull", plan.image, timeout=1800)
        report = upgrade(docker, plan, _switch(args.stack, plan.image, plan.major))
    except (UpgradeError, DeliveryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

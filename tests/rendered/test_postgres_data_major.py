"""templates/postgres/check-data-major*.sh.j2, the step before the server is created or
replaced, run by bash on volumes laid out as PostgreSQL leaves them (a PG_VERSION file in each
cluster's folder): a cluster of another major and none of the stack's is refused with the
fix; the stack's own cluster, or none yet, passes. (tests/e2e/test_pg_upgrade.py runs it in
the real image against a real 15 volume.)"""

import subprocess

import pytest

from components.host.templates import render
from components.settings.postgres import data_directory

pytestmark = pytest.mark.rendered


def check(volume, major: int) -> subprocess.CompletedProcess:
    inside = render("postgres/check-data-major-inside.sh.j2", mount=str(volume),
                    data_directory=data_directory(major), major=major, stack="prod",
                    volume="aiia-postgres-data")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", inside], capture_output=True,
                          text=True, timeout=30, check=False)


def cluster(volume, folder: str, major: int) -> None:
    (volume / folder).mkdir()
    (volume / folder / "PG_VERSION").write_text(f"{major}\n")


def test_a_new_volume_passes(tmp_path):
    result = check(tmp_path, 17)
    assert result.returncode == 0, result.stderr
    assert "no cluster yet: PostgreSQL 17 initialises pgdata-17" in result.stdout


def test_17_over_a_15_cluster_is_refused_with_the_upgrade(tmp_path):
    cluster(tmp_path, "pgdata", 15)
    result = check(tmp_path, 17)
    assert result.returncode == 1
    assert ("the PostgreSQL data volume aiia-postgres-data holds a PostgreSQL 15 cluster "
            "(pgdata) and this stack runs PostgreSQL 17 on pgdata-17") in result.stderr
    assert "`make pg-upgrade STACK=prod TO=<a PostgreSQL 17 image>`" in result.stderr
    assert "set aiia:platform.postgres.data_major: 15" in result.stderr


def test_after_an_upgrade_the_new_cluster_passes_beside_the_kept_old_one(tmp_path):
    cluster(tmp_path, "pgdata", 15)
    cluster(tmp_path, "pgdata-17", 17)
    assert check(tmp_path, 17).returncode == 0
    assert check(tmp_path, 15).returncode == 0  # a rollback: 15 on its untouched folder


def test_a_folder_whose_cluster_is_of_another_major_is_refused(tmp_path):
    cluster(tmp_path, "pgdata-17", 16)
    result = check(tmp_path, 17)
    assert result.returncode == 1
    assert "holds a PostgreSQL 16 cluster (pgdata-17)" in result.stderr

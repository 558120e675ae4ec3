"""The host diagram in the README (docs/host.svg) is the rendering of its source
(docs/host.dot) by Graphviz, so it cannot drift from what `make diagram` makes."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def render(source: Path) -> str:
    result = subprocess.run(["dot", "-Tsvg", str(source)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_committed_svg_is_the_rendering_of_the_source():
    committed = (ROOT / "docs/host.svg").read_text()
    assert render(ROOT / "docs/host.dot") == committed, \
        "docs/host.svg is stale: run `make diagram` and commit it"


def test_a_changed_source_is_caught(tmp_path):
    changed = tmp_path / "host.dot"
    changed.write_text((ROOT / "docs/host.dot").read_text().replace(
        "aiia-redis\\n50 MB", "aiia-redis\\n64 MB"))
    assert render(changed) != (ROOT / "docs/host.svg").read_text()


def test_the_diagram_names_every_platform_container_and_volume():
    source = (ROOT / "docs/host.dot").read_text()
    for name in ("aiia-nginx", "aiia-pgbouncer", "aiia-postgres", "aiia-redis", "certbot",
                 "aiia-dashboard", "aiia-app-prod-", "aiia-app-staging-", "aiia-postgres-data",
                 "aiia-letsencrypt", "aiia-redis-data", "aiia-nginx-cache",
                 "stack prod", "stack staging"):
        assert name in source, name

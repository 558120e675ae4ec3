"""renovate.json, read by Renovate itself: the configuration validates, and an offline
extraction finds every image pin the program has, with its current value.

Renovate 44 (the version renovate.json is written for) runs from the npm registry on the
Node.js 24 of aiia-standin/node:24; tests/tools/renovate.sh installs it once into the cache.
Each run is a `docker run --network none` on a copy of the repository's files: the local
platform (`--platform=local`) reads a directory without a Git host, and `--dry-run=extract`
stops after extraction, before any registry look-up, writing what it found to a JSON report
(`--report-type=file`). Not modelled: the look-ups and the pull requests themselves (they
need Docker Hub and GitHub), and RE2 (Renovate's regex engine where its native module is
built; here it falls back to JavaScript's RegExp — tests/unit/test_renovate_config.py checks
that the patterns use nothing RE2 lacks).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from components.settings.platform import ImageSettings
from tests.unit.test_renovate_config import pinned_requirements, workflow_actions

ROOT = Path(__file__).resolve().parents[2]
NODE_IMAGE = "aiia-standin/node:24"
DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def renovate_dir() -> Path:
    result = subprocess.run(["bash", str(ROOT / "tests/tools/renovate.sh")],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def repository_copy(destination: Path) -> Path:
    """The files Git would commit (tracked and new, not ignored), as Renovate sees a clone."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def renovate(renovate_dir: Path, repository: Path, program: str, *args: str,
             out: Path | None = None) -> subprocess.CompletedProcess[str]:
    mounts = ["-v", f"{renovate_dir}:/opt/renovate:ro", "-v", f"{repository}:/repo:ro"]
    if out is not None:
        mounts += ["-v", f"{out}:/out"]
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", *mounts, "-w", "/repo",
         "-e", "LOG_LEVEL=warn", NODE_IMAGE, f"/opt/renovate/node_modules/.bin/{program}",
         *args],
        capture_output=True, text=True, timeout=300, check=False)


def extract(renovate_dir: Path, repository: Path, out: Path) -> dict[str, list[dict]]:
    """{package file: its dependencies} as Renovate's extraction reports them, every
    manager's together (a workflow is read by github-actions and by a regex manager)."""
    out.mkdir()
    result = renovate(renovate_dir, repository, "renovate", "--platform=local",
                      "--dry-run=extract", "--onboarding=false", "--report-type=file",
                      "--report-path=/out/report.json", out=out)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    package_files = report["repositories"]["local"]["packageFiles"]
    found: dict[str, list[dict]] = {}
    for manager in package_files.values():
        for package in manager:
            found.setdefault(package["packageFile"], []).extend(package["deps"])
    return found


def pins(deps: list[dict]) -> dict[str, str]:
    """{service: image reference} of a regex manager's dependencies."""
    return {dep["depType"]: f"{dep['depName']}:{dep['currentValue']}"
            + (f"@{dep['currentDigest']}" if dep.get("currentDigest") else "") for dep in deps}


def test_renovate_validates_the_configuration_strictly(renovate_dir, tmp_path):
    repository = repository_copy(tmp_path / "repo")
    result = renovate(renovate_dir, repository, "renovate-config-validator", "--strict",
                      "--no-global", "renovate.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_refuses_a_broken_configuration(renovate_dir, tmp_path):
    """The check above can fail: an option Renovate does not know is refused."""
    repository = tmp_path / "repo"
    repository.mkdir()
    config = json.loads((ROOT / "renovate.json").read_text())
    config["customManagers"][0]["matchString"] = config["customManagers"][0].pop("matchStrings")
    (repository / "renovate.json").write_text(json.dumps(config))
    result = renovate(renovate_dir, repository, "renovate-config-validator", "--strict",
                      "--no-global", "renovate.json")
    assert result.returncode != 0
    assert "matchString" in result.stdout + result.stderr


def test_the_extraction_finds_every_image_pin(renovate_dir, tmp_path):
    found = extract(renovate_dir, repository_copy(tmp_path / "repo"), tmp_path / "out")
    defaults = vars(ImageSettings())
    assert pins(found["components/settings/platform.py"]) == defaults
    prod = found["Pulumi.prod.yaml"]
    assert pins(prod) == defaults, "prod runs the defaults, each named in its stack file"
    assert {dep["datasource"] for dep in prod} == {"docker"}
    # The base images the app and the dashboard are built from (their Dockerfiles' ARG).
    assert {dep["depName"] for dep in found["app/Dockerfile"]} == {"python"}
    assert "debian" in {dep["depName"] for dep in found["dashboard/Dockerfile"]}
    assert not [name for name in found if name.startswith(("tests/", "bench/"))], \
        "the stand-ins' Dockerfiles are built from local bases and are not proposed"


def test_a_digest_pin_is_read_with_its_tag(renovate_dir, tmp_path):
    """What docker:pinDigests writes (tag@digest) is read back, so the next update moves both;
    the program's settings accept that form too (tests/unit/settings/test_platform.py)."""
    repository = repository_copy(tmp_path / "repo")
    stack_file = repository / "Pulumi.prod.yaml"
    pinned = f"{ImageSettings().postgres}@{DIGEST}"
    text = stack_file.read_text()
    assert text.count(f" postgres: {ImageSettings().postgres}\n") == 1
    stack_file.write_text(text.replace(f" postgres: {ImageSettings().postgres}\n",
                                       f" postgres: {pinned}\n"))
    found = extract(renovate_dir, repository, tmp_path / "out")
    assert pins(found["Pulumi.prod.yaml"])["postgres"] == pinned


def test_the_extraction_finds_every_action_pin_and_python_requirement(renovate_dir, tmp_path):
    """Review M12: Renovate proposed neither Django's nor Pulumi's releases, nor new commits
    of the actions the workflows pin."""
    found = extract(renovate_dir, repository_copy(tmp_path / "repo"), tmp_path / "out")
    for path in sorted((ROOT / ".github/workflows").glob("*.yml")):
        name = f".github/workflows/{path.name}"
        actions = {(dep["depName"], dep["currentValue"], dep["currentDigest"])
                   for dep in found.get(name, []) if dep.get("depType") == "action"}
        assert actions == workflow_actions(path.read_text()), name
    sdk = pinned_requirements(ROOT / "requirements.txt")["pulumi"]
    for name in (".github/workflows/preview.yml", ".github/workflows/release.yml"):
        cli = [(dep["datasource"], dep["packageName"], dep["currentValue"])
               for dep in found[name] if dep["depName"] == "pulumi"]
        assert cli == [("github-releases", "pulumi/pulumi", sdk)], name
    assert [dep["currentValue"] for dep in found["requirements.txt"]
            if dep["depName"] == "pulumi"] == [f"=={sdk}"]  # the same rule groups the two
    for name in ("requirements.txt", "requirements-dev.txt", "app/requirements.txt",
                 "scripts/requirements.txt"):
        assert {dep["depName"].lower(): dep["currentValue"].removeprefix("==")
                for dep in found[name]} == pinned_requirements(ROOT / name), name

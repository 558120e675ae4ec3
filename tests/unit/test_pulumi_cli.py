"""The Pulumi CLI installer (scripts/pulumi_cli.py), with no network: an HTTP server on
127.0.0.1, started here, stands for Pulumi's download site and serves a made-up release (a
`pulumi` that is a shell script printing its version) and a checksums file. Shown: the
version installed is requirements.txt's, a download whose SHA-256 is not the published one
is refused with nothing installed, and `ensure` downloads nothing where a CLI runs."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from scripts.pulumi_cli import URL_VARIABLE, asset_name, pinned_version
from tests.harness.make import stand_in

ROOT = Path(__file__).resolve().parents[2]
VERSION = pinned_version()


def fake_archive(version: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A release archive laid out like Pulumi's: pulumi/pulumi and a language host."""
    files = {"pulumi/pulumi": f"#!/bin/sh\n# made-up Pulumi CLI\necho v{version}\n".encode(),
             "pulumi/pulumi-language-python": b"#!/bin/sh\nexit 0\n", **(extra or {})}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        directory = tarfile.TarInfo("pulumi")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class DownloadSite:
    """A directory served over HTTP on 127.0.0.1, recording the paths asked for."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.requests: list[str] = []
        site = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                site.requests.append(self.path)

        self.server = HTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
        self.url = f"http://127.0.0.1:{self.server.server_port}/releases/sdk"
        (directory / "releases/sdk").mkdir(parents=True)

    def publish(self, archive: bytes, digest: str | None = None) -> None:
        """The archive for this machine and a checksums file listing `digest` for it (its
        real SHA-256 unless a test says otherwise), beside another platform's line."""
        asset = asset_name(VERSION)
        (self.directory / "releases/sdk" / asset).write_bytes(archive)
        digest = digest or hashlib.sha256(archive).hexdigest()
        (self.directory / f"releases/sdk/pulumi-{VERSION}-checksums.txt").write_text(
            f"{'0' * 64}  pulumi-v{VERSION}-windows-x64.zip\n{digest}  {asset}\n")


@pytest.fixture
def site(tmp_path):
    site = DownloadSite(tmp_path / "site")
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()


def bare_path() -> str:
    """A PATH with no Pulumi CLI on it: this interpreter and the system's tools only."""
    return os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])


def installer(site: DownloadSite, root: Path, *args: str, path: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "scripts.pulumi_cli", *args, "--root", str(root)], cwd=ROOT,
        env={**os.environ, URL_VARIABLE: site.url, "PATH": path or bare_path(),
             "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60)


def test_the_pinned_version_is_the_sdks():
    from importlib.metadata import version

    # The SDK installed here is the one requirements.txt pins: the CLI goes with it.
    assert version("pulumi") == VERSION


def test_ensure_installs_the_pinned_cli_after_checking_its_sha256(site, tmp_path):
    if subprocess.run(["sh", "-c", "command -v pulumi"], env={"PATH": bare_path()},
                      capture_output=True).returncode == 0:
        pytest.skip("a pulumi is installed system-wide here")
    site.publish(fake_archive(VERSION))
    root = tmp_path / "project" / ".pulumi-cli"
    result = installer(site, root, "ensure")
    assert result.returncode == 0, result.stderr
    assert f"installed the Pulumi CLI {VERSION}" in result.stdout
    assert f"pulumi-{VERSION}-checksums.txt lists" in result.stdout
    assert site.requests == [f"/releases/sdk/pulumi-{VERSION}-checksums.txt",
                             f"/releases/sdk/{asset_name(VERSION)}"]
    cli = root / "bin" / "pulumi"
    assert subprocess.run([str(cli), "version"], capture_output=True,
                          text=True).stdout == f"v{VERSION}\n"
    assert sorted(p.name for p in root.iterdir()) == ["bin"], "no download left behind"
    # Found now: a second `ensure` (every `make local`) downloads nothing.
    again = installer(site, root, "ensure")
    assert again.returncode == 0 and f"Pulumi CLI {VERSION} ({cli})" in again.stdout
    assert len(site.requests) == 2


def test_a_download_whose_sha256_is_not_the_published_one_is_refused(site, tmp_path):
    site.publish(fake_archive(VERSION), digest="ab" * 32)
    root = tmp_path / ".pulumi-cli"
    result = installer(site, root, "install")
    assert result.returncode == 1
    assert f"is not {'ab' * 32}, the one pulumi-{VERSION}-checksums.txt lists; refused, " \
        "nothing installed" in result.stderr
    assert f"curl -fsSL https://get.pulumi.com | sh -s -- --version {VERSION}" in result.stderr
    assert list(root.iterdir()) == [], "nothing installed, nothing left behind"


def test_a_cli_already_installed_stays_when_a_new_download_is_refused(site, tmp_path):
    site.publish(fake_archive(VERSION))
    root = tmp_path / ".pulumi-cli"
    assert installer(site, root, "install").returncode == 0
    site.publish(fake_archive(VERSION, {"pulumi/extra": b"tampered"}), digest="cd" * 32)
    assert installer(site, root, "install").returncode == 1
    assert sorted(p.name for p in (root / "bin").iterdir()) == ["pulumi",
                                                               "pulumi-language-python"]


@pytest.mark.parametrize(("member", "message"), [
    ("pulumi/../../evil", "unexpected member 'pulumi/../../evil'"),
    ("elsewhere/pulumi", "unexpected member 'elsewhere/pulumi'"),
])
def test_an_archive_with_files_outside_pulumi_is_refused(site, tmp_path, member, message):
    site.publish(fake_archive(VERSION, {member: b"x"}))  # its checksum is right
    root = tmp_path / ".pulumi-cli"
    result = installer(site, root, "install")
    assert result.returncode == 1 and message in result.stderr
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_an_archive_not_in_the_checksums_file_is_refused(site, tmp_path):
    site.publish(fake_archive(VERSION))
    sums = site.directory / f"releases/sdk/pulumi-{VERSION}-checksums.txt"
    sums.write_text(sums.read_text().splitlines()[0] + "\n")
    result = installer(site, tmp_path / ".pulumi-cli", "install")
    assert result.returncode == 1
    assert f"lists no checksum for {asset_name(VERSION)}" in result.stderr


def test_an_archive_whose_cli_is_another_version_is_refused(site, tmp_path):
    site.publish(fake_archive("3.1.0"))
    result = installer(site, tmp_path / ".pulumi-cli", "install")
    assert result.returncode == 1
    assert f"reports '3.1.0', not {VERSION}" in result.stderr


def test_a_download_site_that_is_not_https_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.pulumi_cli", "install", "--root", str(tmp_path)],
        cwd=ROOT, env={**os.environ, URL_VARIABLE: "http://mirror.example/sdk"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "must be an https:// URL" in result.stderr


def test_check_without_a_cli_names_the_command_that_installs_it(site, tmp_path):
    if subprocess.run(["sh", "-c", "command -v pulumi"], env={"PATH": bare_path()},
                      capture_output=True).returncode == 0:
        pytest.skip("a pulumi is installed system-wide here")
    result = installer(site, tmp_path / ".pulumi-cli", "check")
    assert result.returncode == 1
    assert f"no Pulumi CLI: `make pulumi-cli` installs {VERSION}" in result.stderr
    assert site.requests == []


def test_another_version_on_path_is_used_and_the_pin_is_named(site, tmp_path):
    bin_dir = stand_in(tmp_path / "bin/pulumi", "#!/bin/sh\necho v3.200.0\n").parent
    result = installer(site, tmp_path / ".pulumi-cli", "ensure",
                       path=f"{bin_dir}{os.pathsep}{bare_path()}")
    assert result.returncode == 0
    assert f"Pulumi CLI 3.200.0 ({bin_dir / 'pulumi'}); the SDK here is {VERSION}" \
        in result.stdout
    assert site.requests == []


def test_asset_names_follow_pulumis_release_layout():
    assert asset_name("3.272.0", "Linux", "x86_64") == "pulumi-v3.272.0-linux-x64.tar.gz"
    assert asset_name("3.272.0", "Linux", "aarch64") == "pulumi-v3.272.0-linux-arm64.tar.gz"
    assert asset_name("3.272.0", "Darwin", "arm64") == "pulumi-v3.272.0-darwin-arm64.tar.gz"

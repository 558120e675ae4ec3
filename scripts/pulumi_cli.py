"""The Pulumi CLI this project runs with: found, or installed into the project, verified.

    python3 -m scripts.pulumi_cli check     # which `pulumi` runs, against the version pinned
    python3 -m scripts.pulumi_cli ensure    # check; where none runs, install the pinned one
    python3 -m scripts.pulumi_cli install   # install the pinned one (again)

The pinned version is the SDK's (`pulumi==` in requirements.txt): Pulumi releases the CLI
and the SDK together, and the workflows pin the same one. It is installed into the
project's `.pulumi-cli/bin/` (`--root` for another place), which the Makefile puts first
on its PATH; nothing outside the project changes (your shell's PATH, ~/.pulumi/bin).

What is installed is Pulumi's release archive for this system
(`pulumi-v<version>-<os>-<arch>.tar.gz`), and only once its SHA-256 is the one Pulumi
publishes for it in `pulumi-<version>-checksums.txt`: a download that differs is refused and
nothing is installed. The SDK's own `pulumi.automation.PulumiCommand.install` is not used:
it downloads https://get.pulumi.com/install.sh and runs it, and checks no checksum itself
(pulumi 3.272.0, automation/_cmd.py). AIIA_PULUMI_DOWNLOAD_URL names another download site
laid out like Pulumi's (a mirror; the tests' server on 127.0.0.1).

Standard library only: it runs before the virtualenv exists. Exit codes: 0 done (a note
when the CLI found is not the pinned version), 1 no CLI / install failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = ROOT / ".pulumi-cli"
DOWNLOAD_URL = "https://get.pulumi.com/releases/sdk"
URL_VARIABLE = "AIIA_PULUMI_DOWNLOAD_URL"
# The archive holds the CLI and its language hosts (a few hundred MB at most).
MAX_ARCHIVE_BYTES = 1 << 30
MEMBER_RE = re.compile(r"^pulumi/([A-Za-z0-9][A-Za-z0-9._-]*)$")


class InstallError(Exception):
    """Why the CLI could not be installed; nothing was."""


def pinned_version(requirements: Path = ROOT / "requirements.txt") -> str:
    """The `pulumi==<version>` of requirements.txt."""
    match = re.search(r"^pulumi==([0-9][0-9A-Za-z.+-]*)\s*$", requirements.read_text(),
                      re.MULTILINE)
    if match is None:
        raise InstallError(f"no pulumi==<version> line in {requirements}")
    return match[1]


def manual_command(version: str) -> str:
    """Pulumi's own installer, for a machine where this one cannot download."""
    return f"curl -fsSL https://get.pulumi.com | sh -s -- --version {version}"


@dataclass(frozen=True)
class Found:
    path: str
    version: str  # as `pulumi version` prints it, without the v


def cli_version(path: str) -> str | None:
    try:
        result = subprocess.run([path, "version"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
                                check=False)
    except OSError:
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip().removeprefix("v") or None


def find_cli(root: Path = DEFAULT_ROOT) -> Found | None:
    """The project's own CLI first (the Makefile's PATH puts it first too), then PATH's."""
    for path in (root / "bin" / "pulumi", shutil.which("pulumi")):
        if path and Path(path).is_file() and (version := cli_version(str(path))):
            return Found(str(path), version)
    return None


def asset_name(version: str, system: str | None = None, machine: str | None = None) -> str:
    """Pulumi's archive name for this machine, e.g. pulumi-v3.272.0-linux-x64.tar.gz."""
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if system not in ("linux", "darwin") or arch is None:
        raise InstallError(f"Pulumi publishes no archive for {system}/{machine} that this "
                           "installer knows; install the CLI by hand (pulumi.com/docs/install)")
    return f"pulumi-v{version}-{system}-{arch}.tar.gz"


def download_url() -> str:
    base = os.environ.get(URL_VARIABLE, DOWNLOAD_URL).rstrip("/")
    parsed = urllib.parse.urlsplit(base)
    if parsed.scheme != "https" and not (parsed.scheme == "http"
                                         and parsed.hostname in ("127.0.0.1", "localhost")):
        raise InstallError(f"{URL_VARIABLE}={base!r} must be an https:// URL")
    return base


def fetch(url: str, out, limit: int) -> str:
    """Copy `url` into the open file `out`; returns the SHA-256 of what came."""
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (scheme checked)
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise InstallError(f"{url} is larger than {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        raise InstallError(f"cannot download {url}: {error}") from error
    return digest.hexdigest()


def expected_digest(checksums: str, asset: str, source: str) -> str:
    for line in checksums.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == asset:
            if not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
                raise InstallError(f"{source}: {fields[0]!r} is not a SHA-256 for {asset}")
            return fields[0]
    raise InstallError(f"{source} lists no checksum for {asset}")


def extract(archive: Path, bin_dir: Path) -> list[str]:
    """The archive's `pulumi/<file>` members into bin_dir; anything else in it is refused."""
    bin_dir.mkdir(parents=True)
    names = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.isdir() and member.name.rstrip("/") == "pulumi":
                    continue
                match = MEMBER_RE.match(member.name)
                if not (match and member.isfile()):
                    raise InstallError(f"unexpected member {member.name!r} in the archive")
                source = tar.extractfile(member)
                target = bin_dir / match[1]
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                target.chmod(0o755)
                names.append(match[1])
    except tarfile.TarError as error:
        raise InstallError(f"the archive cannot be read: {error}") from error
    if "pulumi" not in names:
        raise InstallError("the archive holds no pulumi/pulumi")
    return names


def install(version: str, root: Path = DEFAULT_ROOT) -> Path:
    """Download, verify and install `version` into root/bin; returns the CLI's path."""
    asset = asset_name(version)
    base = download_url()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".install-", dir=root) as scratch:
        work = Path(scratch)
        sums_name = f"pulumi-{version}-checksums.txt"
        with open(work / sums_name, "wb") as out:
            fetch(f"{base}/{sums_name}", out, 1 << 20)
        expected = expected_digest((work / sums_name).read_text(errors="replace"), asset,
                                   sums_name)
        with open(work / asset, "wb") as out:
            actual = fetch(f"{base}/{asset}", out, MAX_ARCHIVE_BYTES)
        if actual != expected:
            raise InstallError(f"{asset}: SHA-256 {actual} is not {expected}, the one "
                               f"{sums_name} lists; refused, nothing installed")
        staged = work / "bin"
        extract(work / asset, staged)
        reported = cli_version(str(staged / "pulumi"))
        if reported != version:
            raise InstallError(f"the archive's pulumi reports {reported!r}, not {version}")
        target = root / "bin"
        if target.exists():
            target.rename(work / "previous-bin")
        staged.rename(target)
    print(f"installed the Pulumi CLI {version} in {target} ({asset}, SHA-256 {actual} as "
          f"{sums_name} lists)")
    return target / "pulumi"


def describe(found: Found | None, version: str) -> tuple[int, str]:
    if found is None:
        return 1, (f"no Pulumi CLI: `make pulumi-cli` installs {version} (the SDK's) into "
                   f"this project, checksum verified; or: {manual_command(version)}")
    if found.version != version:
        return 0, (f"Pulumi CLI {found.version} ({found.path}); the SDK here is {version}: "
                   f"`python3 -m scripts.pulumi_cli install` puts {version} in the project")
    return 0, f"Pulumi CLI {found.version} ({found.path})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("check", "ensure", "install"))
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="where bin/pulumi goes (default: .pulumi-cli in the project)")
    args = parser.parse_args(argv)
    try:
        version = pinned_version()
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    found = None if args.command == "install" else find_cli(args.root)
    if args.command == "install" or (args.command == "ensure" and found is None):
        if found is None and args.command == "ensure":
            print(f"no Pulumi CLI found: installing {version} (the SDK's) into {args.root}")
        try:
            install(version, args.root)
        except InstallError as error:
            print(f"error: {error}\nInstall it another way: {manual_command(version)}",
                  file=sys.stderr)
            return 1
        return 0
    code, message = describe(found, version)
    print(message, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())

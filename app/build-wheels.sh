#!/usr/bin/env bash
# Download the app's wheels (Linux x86_64, CPython 3.13: the base image's, python:3.13-slim-trixie,
# and Debian 13's) into app/wheels/ with this machine's
# pip, for an image build that cannot reach PyPI itself:
#   app/build-wheels.sh [DEST] && docker build --build-arg PIP_INSTALL_MODE=wheels ... app
# DEST defaults to app/wheels/ (git-ignored). PYTHON picks the interpreter whose pip is used.
set -euo pipefail

app_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$app_dir/wheels}"
python="${PYTHON:-python3}"
# REQUIREMENTS: another pinned list (the e2e stock project's: tests/e2e/images/stock).
requirements="${REQUIREMENTS:-$app_dir/requirements.txt}"

# Every pin of requirements.txt, its environment marker dropped: pip evaluates markers for
# the interpreter running it, not for the target (async-timeout is for Pythons below 3.11.3,
# which the image is not; the install, run by the target's pip, skips it).
mapfile -t pins < <(sed -e 's/#.*//' -e 's/;.*//' -e 's/[[:space:]]//g' "$requirements" | grep -v '^$')

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT

"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --implementation cp --python-version 3.13 --abi cp313 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    --dest "$staging" "${pins[@]}"

mkdir -p "$dest"
rm -f "$dest"/*.whl
mv "$staging"/*.whl "$dest"/
echo "build-wheels: ${#pins[@]} pinned packages -> $(find "$dest" -name '*.whl' | wc -l) wheels in $dest"

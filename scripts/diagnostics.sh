#!/usr/bin/env bash
# What a failed release leaves to look at, into a directory the workflow attaches to the
# run: the environment's release history records, its app containers and the last log
# lines of each, nginx's upstream for it and its last error-log lines.
#   bash scripts/diagnostics.sh STACK ENVIRONMENT OUTPUT_DIR
# Run where the stack files are (the checkout's root in CI). Reaches the host as the stack
# does (host.docker_host, host.ssh.*); a part that cannot be read is written down as such
# and the rest goes on.
set -euo pipefail
PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
if [ $# -ne 3 ]; then
  echo "usage: bash scripts/diagnostics.sh STACK ENVIRONMENT OUTPUT_DIR" >&2
  exit 2
fi
stack=$1 environment=$2 out=$3
get() { python3 -m scripts.stack_file get "$stack" "$1"; }
prefix=$(get prefix)
root=$(get host.root_dir 2>/dev/null || echo .local-host)
case "$root" in /*) ;; *) root="$PWD/$root" ;; esac  # a local stack's is the checkout's
# The Docker provider's host (scripts/stack_file.py derives an ssh stack's from host.ssh).
DOCKER_HOST=$(get host.docker_host 2>/dev/null || echo "unix:///var/run/docker.sock")
export DOCKER_HOST
mkdir -p "$out"
on_host() {  # a command on the host: over SSH for an ssh host, here for a local one
  if [ "$(get host.kind)" = ssh ]; then
    ssh -o BatchMode=yes -p "$(get host.ssh.port)" "$(get host.ssh.user)@$(get host.ssh.host)" "$@"
  else
    bash -c "$*"
  fi
}
save() {  # save NAME COMMAND...: its output, or why there is none
  local name=$1; shift
  if ! "$@" >"$out/$name" 2>&1; then
    echo "(exit $?: $*)" >>"$out/$name"
  fi
  echo "diagnostics: $out/$name"
}
save releases.jsonl on_host "grep -F '\"environment\":\"$environment\"' '$root/state/releases.jsonl' | tail -n 20"
save containers.txt docker ps -a --filter "name=$prefix-app-$environment-" \
  --format '{{.Names}}\t{{.Image}}\t{{.Status}}'
for container in $(docker ps -a --filter "name=$prefix-app-$environment-" --format '{{.Names}}'); do
  save "logs-$container.txt" docker logs --tail 200 "$container"
done
save upstream.conf on_host "cat '$root/nginx/upstreams/$environment.conf'"
save nginx-error.log docker logs --tail 100 "$prefix-nginx"

#!/usr/bin/env bash
# CI only, in the deploy job of release.yml, before `pulumi up`: holds the host for this
# stack until the job ends, so that prod and staging never change the shared host at once
# (components/host/lease.py). It takes the lease every host command of the program takes,
# waiting at most as long as they do, on a connection kept open by a background process of
# this job: the runner ends those when the job ends, the connection closes and the host lets
# go (a dropped runner: sshd's ClientAlive checks end it within 10 minutes).
#   STACK=prod bash scripts/host-lease.sh
# A wait past its bound fails the job before anything changed, naming the stack that holds
# the host and since when: its deploy is still running; run this one again once it is done.
set -euo pipefail
: "${STACK:?the stack (prod or staging) whose host to hold}"
: "${RUNNER_TEMP:?not under GitHub Actions}"
get() { python3 -m scripts.stack_file get "$STACK" "$1"; }
holder="deploy of $STACK (GitHub run ${GITHUB_RUN_ID:-?}, ${GITHUB_SHA:-?})"
remote=$(python3 -m scripts.host_lease "$STACK" "$holder")
wait_seconds=$(python3 -c 'from components.host.lease import HOST_LEASE_WAIT_SECONDS as s; print(s)')
user=$(get host.ssh.user 2>/dev/null || echo deploy)
port=$(get host.ssh.port 2>/dev/null || echo 22)
stdin="$RUNNER_TEMP/host-lease.stdin"
log="$RUNNER_TEMP/host-lease.log"
rm -f "$stdin" "$log"
mkfifo "$stdin"
# The held command's standard input, open until the runner ends this job's processes.
sleep infinity > "$stdin" &
ssh -o BatchMode=yes -o ServerAliveInterval=30 -p "$port" "$user@$(get host.ssh.host)" \
  "$remote" < "$stdin" > "$log" 2>&1 &
connection=$!
deadline=$((SECONDS + wait_seconds + 60))
until grep -q '^host held$' "$log" 2>/dev/null; do
  if ! kill -0 "$connection" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "host-lease: $STACK could not hold its host:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 2
done
echo "host-lease: $holder holds the host until this job ends"

#!/usr/bin/env bash
# The Makefile's look-at-the-host commands, reaching the host the way its stack file says.
#   bash scripts/ops.sh logs STACK SERVICE   # last 100 lines (an app: its newest container)
#   bash scripts/ops.sh status STACK         # the dashboard's /api/status JSON
#   bash scripts/ops.sh ssh STACK            # a shell on the host
#   bash scripts/ops.sh job STACK PATH ARGS… # a job the program installed under host.root_dir,
#                                            # as root on the host (e.g. bin/backup.sh run)
# Run where the stack files are (the Makefile runs it from the checkout's root).
set -euo pipefail
PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
usage() { echo "usage: bash scripts/ops.sh logs STACK SERVICE | status STACK | ssh STACK | job STACK PATH [ARGS…]" >&2; exit 2; }
[ $# -ge 2 ] || usage
command=$1 stack=$2
get() { python3 -m scripts.stack_file get "$stack" "$1"; }
kind=$(get host.kind)
# A local stack's state is the project's (scripts/local.sh), whatever your `pulumi login`.
if [ "$kind" = local ]; then export PULUMI_BACKEND_URL="file://$PWD/.pulumi-local"; fi
host_root() {  # host.root_dir; a local stack's is set by `make local`
  if [ "$kind" = local ] && ! get host.root_dir >/dev/null 2>&1; then
    echo "the local stack is not set up in this checkout: \`make local\` sets it up" >&2
    exit 1
  fi
  get host.root_dir
}
case "$command" in
  logs)
    [ $# -eq 3 ] || usage
    service=$3
    if [ "$kind" = ssh ]; then DOCKER_HOST=$(get host.docker_host); export DOCKER_HOST; fi
    prefix=$(get prefix)
    container=$(docker ps --filter "name=^$prefix-$service(-|\$)" --format '{{.CreatedAt}}	{{.Names}}' \
      | sort -r | head -n 1 | cut -f2)
    if [ -z "$container" ]; then
      echo "no running container of $service in stack $stack (prefix $prefix)" >&2
      exit 1
    fi
    echo "== docker logs --tail 100 $container" >&2
    exec docker logs --tail 100 "$container"
    ;;
  status)
    # The platform's owner has the status domain (staging reads prod's platform).
    owner=$stack
    if [ "$(get platform.owner)" != True ]; then owner=prod; fi
    domain=$(python3 -m scripts.stack_file get "$owner" platform.status_domain)
    port=$(python3 -m scripts.stack_file get "$owner" platform.nginx.https_port 2>/dev/null || echo 443)
    user=$(python3 -m scripts.stack_file get "$owner" platform.dashboard.user 2>/dev/null || echo admin)
    password=$(pulumi config get -s "$owner" aiia:dashboard_password)
    insecure=()
    if [ "$kind" = local ]; then insecure=(-k --resolve "$domain:$port:127.0.0.1"); fi
    curl -fsS "${insecure[@]}" -u "$user:$password" "https://$domain:$port/api/status"
    echo
    ;;
  ssh)
    if [ "$kind" != ssh ]; then
      echo "stack $stack runs on this machine (host.kind: $kind): there is no host to ssh to" >&2
      exit 1
    fi
    exec ssh -p "$(get host.ssh.port)" "$(get host.ssh.user)@$(get host.ssh.host)"
    ;;
  job)
    [ $# -ge 3 ] || usage
    shift 2
    job="$(host_root)/$1"
    shift
    if [ "$kind" = ssh ]; then
      # The job checks its own lock, space and keys; it says what failed and exits non-zero.
      exec ssh -p "$(get host.ssh.port)" "$(get host.ssh.user)@$(get host.ssh.host)" \
        sudo -n "$job" "$@"
    fi
    if [ ! -x "$job" ]; then
      echo "no $job on this machine: \`pulumi up -s $stack\` installs it" >&2
      exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then exec "$job" "$@"; fi
    exec sudo "$job" "$@"
    ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# The Makefile's everyday commands on a stack's host, reaching it the way its stack file says:
# a local stack here; a VPS through host.docker_host for Docker and host.ssh for the rest.
#   bash scripts/ops.sh logs STACK SERVICE [--follow] [--since WHEN]
#       the last 100 lines (an app-ENV: its newest container; a VPS's dashboard: its unit)
#   bash scripts/ops.sh exec STACK ENVIRONMENT COMMAND…
#       COMMAND in a new container made like ENVIRONMENT's serving release (its image,
#       variables, secrets, network and user; scripts/app_exec.py)
#   bash scripts/ops.sh restart STACK SERVICE   # a platform service, or app-ENV: the
#                                               # serving release; waits until it is healthy
#   bash scripts/ops.sh releases STACK [ENVIRONMENT]  # the release history (releases.jsonl)
#   bash scripts/ops.sh status STACK            # the dashboard's /api/status JSON (as
#                                               # OPERATOR where platform.dashboard.operators)
#   bash scripts/ops.sh alerts-test STACK       # a test message through every alert
#                                               # channel (platform.alerts), now
#   bash scripts/ops.sh ssh STACK               # a shell on the host
#   bash scripts/ops.sh job STACK PATH ARGS…    # a job the program installed under
#                                               # host.root_dir, as root (bin/backup.sh run)
# Run where the stack files are (the Makefile runs it from the checkout's root).
set -euo pipefail
PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
usage() {
  echo "usage: bash scripts/ops.sh logs STACK SERVICE [--follow] [--since WHEN]" \
    "| exec STACK ENVIRONMENT COMMAND… | restart STACK SERVICE | releases STACK [ENVIRONMENT]" \
    "| status STACK | alerts-test STACK | ssh STACK | job STACK PATH [ARGS…]" >&2
  exit 2
}
[ $# -ge 2 ] || usage
command=$1 stack=$2
shift 2
get() { python3 -m scripts.stack_file get "$stack" "$1"; }
kind=$(get host.kind)
prefix=$(get prefix)
if [ "$kind" = ssh ]; then
  ssh_port=$(get host.ssh.port 2>/dev/null || echo 22)
  ssh_target="$(get host.ssh.user)@$(get host.ssh.host)"
  # Docker on the VPS, as the stack's Docker provider reaches it.
  DOCKER_HOST=$(get host.docker_host 2>/dev/null || echo "ssh://$ssh_target:$ssh_port")
  export DOCKER_HOST
else
  # A local stack's state is the project's (scripts/local.sh), whatever your `pulumi login`.
  export PULUMI_BACKEND_URL="file://$PWD/.pulumi-local"
fi
on_host() {  # a command on the host: over SSH for a VPS, here for a local stack
  if [ "$kind" = ssh ]; then
    ssh -p "$ssh_port" "$ssh_target" "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}
host_root() {  # host.root_dir; a local stack's is relative to the checkout (the settings')
  local root
  root=$(get host.root_dir 2>/dev/null || echo .local-host)
  if [ "$kind" = local ]; then
    [[ "$root" = /* ]] || root="$PWD/$root"
    # Its nginx directory, made by the platform's first `up`: the root alone may hold no
    # more than the host's lease (state/host-lease), taken by a script before anything ran.
    if [ ! -d "$root/nginx" ]; then
      echo "the local stack is not set up in this checkout: \`make local\` sets it up" >&2
      exit 1
    fi
  fi
  echo "$root"
}
name_part() {  # $2 if it may be part of a container name, else a usage error naming $1
  if [[ ! "$2" =~ ^[a-z][a-z0-9-]*$ ]]; then
    echo "$1 '$2' is not a name (lower-case letters, digits, -)" >&2
    exit 2
  fi
}
serving() {  # the container nginx sends ENVIRONMENT's traffic to: its upstream names it
  local file container
  file="$(host_root)/nginx/upstreams/$1.conf"
  container=$(on_host cat "$file" 2>/dev/null | sed -n 's/^# release .*: //p' || true)
  if [ -z "$container" ]; then
    echo "no serving release of $1 in stack $stack (no release named in $file):" \
      "environments are those of aiia:platform.environments" >&2
    exit 1
  fi
  echo "$container"
}
platform_container() {  # SERVICE's container (exactly $prefix-SERVICE), or an error
  if [ -z "$(docker ps -a -q --filter "name=^$prefix-$1\$")" ]; then
    echo "no container $prefix-$1 in stack $stack: a service is one of postgres, pgbouncer," \
      "redis, nginx, certbot, dashboard, or app-<environment>" >&2
    exit 1
  fi
  echo "$prefix-$1"
}
health() {
  docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1"
}

case "$command" in
  logs)
    [ $# -ge 1 ] || usage
    service=$1
    shift
    name_part SERVICE "$service"
    options=(--tail 100) journal=(-n 100)
    while [ $# -gt 0 ]; do
      case "$1" in
        --follow) options+=(--follow) journal+=(--follow) ;;
        --since) [ $# -ge 2 ] || usage; options+=(--since "$2") journal+=(--since "$2"); shift ;;
        *) usage ;;
      esac
      shift
    done
    if [ "$kind" = ssh ] && [ "$service" = dashboard ]; then
      # On a VPS the dashboard is a systemd unit, not a container.
      echo "== journalctl -u aiia-dashboard.service ${journal[*]}" >&2
      on_host sudo -n journalctl --no-pager -u aiia-dashboard.service "${journal[@]}"
      exit
    fi
    if [[ "$service" == app-* ]]; then  # the newest: a failed release's, if it is newer
      container=$(docker ps --filter "name=^$prefix-$service-" \
        --format '{{.CreatedAt}}	{{.Names}}' | sort -r | head -n 1 | cut -f2)
      [ -n "$container" ] || { echo "no container of $service in stack $stack" >&2; exit 1; }
    else
      container=$(platform_container "$service")
    fi
    echo "== docker logs ${options[*]} $container" >&2
    exec docker logs "${options[@]}" "$container"
    ;;
  exec)
    [ $# -ge 2 ] || usage
    name_part ENVIRONMENT "$1"
    container=$(serving "$1")
    shift
    exec python3 -m scripts.app_exec "$container" "$@"
    ;;
  restart)
    [ $# -eq 1 ] || usage
    service=$1
    name_part SERVICE "$service"
    if [ "$kind" = ssh ] && [ "$service" = dashboard ]; then
      echo "== systemctl restart aiia-dashboard.service" >&2
      on_host sudo -n systemctl restart aiia-dashboard.service
      exit
    fi
    if [[ "$service" == app-* ]]; then
      container=$(serving "${service#app-}")
      echo "${service#app-} answers 502 until $container is healthy again (a restart stops" \
        "it; \`pulumi up\` of a new generation is the way without an outage)" >&2
    else
      container=$(platform_container "$service")
      echo "what $service serves is down until it is healthy again" >&2
    fi
    echo "== docker restart $container" >&2
    docker restart "$container" >/dev/null
    for _ in $(seq 120); do
      state=$(health "$container")
      if [ "$state" = healthy ] || [ "$state" = running ]; then
        echo "$container is $state"
        exit 0
      fi
      sleep 1
    done
    echo "$container is $state 120 s after its restart: make logs SERVICE=$service" >&2
    exit 1
    ;;
  releases)
    [ $# -le 1 ] || usage
    filter=()
    if [ $# -eq 1 ]; then name_part ENVIRONMENT "$1"; filter=(--environment "$1"); fi
    history="$(host_root)/state/releases.jsonl"
    if ! records=$(on_host cat "$history" 2>/dev/null); then
      echo "no release recorded in stack $stack yet ($history cannot be read)" >&2
      exit 1
    fi
    python3 -m scripts.release_history "${filter[@]}" <<<"$records"
    ;;
  status)
    [ $# -eq 0 ] || usage
    # The platform's owner has the status domain (staging reads prod's platform).
    owner=$stack
    if [ "$(get platform.owner)" != True ]; then owner=prod; fi
    domain=$(python3 -m scripts.stack_file get "$owner" platform.status_domain)
    port=$(python3 -m scripts.stack_file get "$owner" platform.nginx.https_port 2>/dev/null || echo 443)
    # One account per operator (platform.dashboard.operators): yours, named by OPERATOR, so
    # that the dashboard's audit lines name you; else the one shared account.
    operators=$(python3 -m scripts.stack_file get "$owner" platform.dashboard.operators \
      2>/dev/null || echo "[]")
    if [ "$operators" != "[]" ]; then
      if [[ ! "${OPERATOR:-}" =~ ^[a-z][a-z0-9]{0,31}$ ]]; then
        echo "stack $owner's dashboard has an account per operator" \
          "(platform.dashboard.operators: $operators): name yours," \
          "e.g. make status STACK=$stack OPERATOR=alice" >&2
        exit 2
      fi
      user=$OPERATOR
      password=$(pulumi config get -s "$owner" "aiia:dashboard_password_$OPERATOR")
    else
      user=$(python3 -m scripts.stack_file get "$owner" platform.dashboard.user 2>/dev/null || echo admin)
      password=$(pulumi config get -s "$owner" aiia:dashboard_password)
    fi
    insecure=()
    if [ "$kind" = local ]; then insecure=(-k --resolve "$domain:$port:127.0.0.1"); fi
    # The credentials reach curl as a config file on its standard input (-K -), never on
    # its command line, which any user of this machine can read in `ps`. In a double-quoted
    # config value, \\ and \" are curl's escapes (curl(1), -K/--config).
    credentials="$user:$password"
    credentials=${credentials//\\/\\\\}
    credentials=${credentials//\"/\\\"}
    printf 'user = "%s"\n' "$credentials" \
      | curl -fsS "${insecure[@]}" -K - "https://$domain:$port/api/status"
    echo
    ;;
  alerts-test)
    [ $# -eq 0 ] || usage
    if [ "$(get platform.owner)" != True ]; then
      echo "stack $stack reads its platform from another stack: the alert channels are" \
        "that stack's (make alerts-test STACK=prod)" >&2
      exit 1
    fi
    config="$(host_root)/dashboard/config.json"
    if [ "$kind" = ssh ]; then
      # As root, who alone reads the channels' secrets (the notifier's unit copies them).
      on_host sudo -n env PYTHONPATH=/opt/aiia python3 -m dashboard notify-test --config "$config"
    else
      collector=$(platform_container dashboard-collector)
      exec docker exec "$collector" python3 -m dashboard notify-test --config "$config"
    fi
    ;;
  ssh)
    if [ "$kind" != ssh ]; then
      echo "stack $stack runs on this machine (host.kind: $kind): there is no host to ssh to" >&2
      exit 1
    fi
    exec ssh -p "$ssh_port" "$ssh_target"
    ;;
  job)
    [ $# -ge 1 ] || usage
    job="$(host_root)/$1"
    shift
    if [ "$kind" = ssh ]; then
      # The job checks its own lock, space and keys; it says what failed and exits non-zero.
      on_host sudo -n "$job" "$@"
      exit
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

#!/usr/bin/env bash
# The local stack on this machine's Docker (Linux or WSL2: its host scripts use GNU stat,
# flock and setsid), with generated dev-only secrets.
#   bash scripts/local.sh up                   # make local: prepare, then pulumi up -s local
#   bash scripts/local.sh prepare              # the stack, its secrets and root; no update
#   bash scripts/local.sh destroy [--volumes]  # make destroy-local [VOLUMES=1]
#   bash scripts/local.sh password             # the dashboard's password
#   bash scripts/local.sh pulumi ARGS…         # pulumi ARGS on the local stack's state
# Its state is the project's own (.pulumi-local/, through PULUMI_BACKEND_URL), so your
# `pulumi login` is never changed; its host files are under .local-host/ (host.root_dir),
# which a reboot keeps, unlike /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.pulumi-cli/bin:$PWD/.venv/bin:$PATH"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-}"
export PULUMI_BACKEND_URL="file://$PWD/.pulumi-local"
root="$PWD/.local-host"
usage() {
  echo "usage: bash scripts/local.sh up | prepare | destroy [--volumes] | password" \
    "| pulumi ARGS…" >&2
  exit 2
}
get() { python3 -m scripts.stack_file get local "$1"; }

prepare() {
  mkdir -p .pulumi-local
  pulumi stack select local 2>/dev/null || pulumi stack init local --secrets-provider passphrase
  local key
  for key in postgres_password dashboard_password prod_db_password staging_db_password \
             prod_redis_password staging_redis_password prod_secret_key staging_secret_key; do
    # A dev-only secret, made once and kept on later runs.
    if ! pulumi config get -s local "aiia:$key" >/dev/null 2>&1; then
      pulumi config set -s local --secret "aiia:$key" "$(openssl rand -hex 24)"
      echo "generated aiia:$key"
    fi
  done
}

case "${1:-}" in
  prepare) prepare ;;
  up)
    prepare
    pulumi up -s local --yes
    port=$(get platform.nginx.https_port)
    echo
    for environment in prod staging; do
      echo "$environment: https://$(get "platform.environments.$environment.domain"):$port/"
    done
    echo "dashboard: https://$(get platform.status_domain):$port/ (user admin; password:" \
      "bash scripts/local.sh password)"
    ;;
  password) pulumi config get -s local aiia:dashboard_password ;;
  pulumi) shift; exec pulumi "$@" ;;
  destroy)
    prefix=$(get prefix)
    if [ "${2:-}" = --volumes ]; then
      pulumi state unprotect -s local --all --yes
      pulumi destroy -s local --yes
      echo "removed the local stack, with its databases ($prefix-postgres-data) and" \
        "certificates ($prefix-letsencrypt)"
    elif [ $# -eq 1 ]; then
      pulumi destroy -s local --yes --exclude-protected
      echo "kept the protected volumes $prefix-postgres-data (the databases) and" \
        "$prefix-letsencrypt (certificates); \`make destroy-local VOLUMES=1\` removes them too"
    else
      usage
    fi
    echo "the host files stay in $root (logs, media, backups): remove it to start from nothing"
    ;;
  *) usage ;;
esac

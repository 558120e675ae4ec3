#!/usr/bin/env bash
# `make local`: the local stack with Pulumi's file backend and generated dev-only secrets.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-}"
mkdir -p .pulumi-local
pulumi login "file://$PWD/.pulumi-local" >/dev/null
pulumi stack select local 2>/dev/null || pulumi stack init local --secrets-provider passphrase
secret() {  # set a dev-only secret once; keep it on later runs
  if ! pulumi config get -s local "aiia:$1" >/dev/null 2>&1; then
    pulumi config set -s local --secret "aiia:$1" "$(openssl rand -hex 24)"
    echo "generated aiia:$1"
  fi
}
for key in postgres_password dashboard_password prod_db_password staging_db_password \
           prod_redis_password staging_redis_password prod_secret_key staging_secret_key; do
  secret "$key"
done
pulumi up -s local --yes
echo
echo "prod:      https://prod.localhost:8443/"
echo "staging:   https://staging.localhost:8443/"
echo "dashboard: https://status.localhost:8443/ (user admin; password: pulumi config get -s local aiia:dashboard_password)"

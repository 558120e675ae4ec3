#!/usr/bin/env bash
# Builds the images the e2e suite deploys, from this repository, offline, FROM the
# stand-in bases; skips a build whose inputs have not changed (hash label).
#   aiia-e2e-app:build        app/Dockerfile (wheels downloaded on the host)
#   aiia-e2e-dashboard:test   dashboard/Dockerfile
#   aiia-e2e-app:stock        tests/e2e/images/stock (a stock Django project, its own wheels)
set -euo pipefail
cd "$(dirname "$0")/../.."

inputs_hash() {
  find "$@" -type f ! -path '*/__pycache__/*' ! -path '*/wheels/*' -print0 | sort -z \
    | xargs -0 sha256sum | sha256sum | cut -c1-16
}
current_hash() {
  docker image inspect --format '{{ index .Config.Labels "aiia.e2e.inputs-sha256" }}' "$1" \
    2>/dev/null || true
}

app_hash=$(inputs_hash app/Dockerfile app/requirements.txt app/aiia app/notes app/manage.py \
  app/healthcheck.py)
if [ "$(current_hash aiia-e2e-app:build)" = "$app_hash" ]; then
  echo "aiia-e2e-app:build up to date"
else
  echo "building aiia-e2e-app:build"
  if ! ls app/wheels/*.whl >/dev/null 2>&1; then
    bash app/build-wheels.sh
  fi
  docker build -q --build-arg BASE_IMAGE=aiia-standin/python:3.13 \
    --build-arg PIP_INSTALL_MODE=wheels --label "aiia.e2e.inputs-sha256=$app_hash" \
    -t aiia-e2e-app:build app
fi

dashboard_hash=$(inputs_hash dashboard)
if [ "$(current_hash aiia-e2e-dashboard:test)" = "$dashboard_hash" ]; then
  echo "aiia-e2e-dashboard:test up to date"
else
  echo "building aiia-e2e-dashboard:test"
  docker build -q --build-arg BASE_IMAGE=aiia-standin/debian:trixie \
    --label "aiia.e2e.inputs-sha256=$dashboard_hash" -t aiia-e2e-dashboard:test dashboard
fi

# Variants of the reference app for the release tests (tests/e2e/images/README.md), each
# FROM aiia-e2e-app:build: rebuilt when their own files or that base image change.
for variant in unhealthy broken schema-b bad-migration lock-migration ordinary slow-start; do
  variant_hash=$( { inputs_hash "tests/e2e/images/$variant"
                    docker image inspect --format '{{ .Id }}' aiia-e2e-app:build; } \
    | sha256sum | cut -c1-16)
  if [ "$(current_hash "aiia-e2e-app:$variant")" = "$variant_hash" ]; then
    echo "aiia-e2e-app:$variant up to date"
  else
    echo "building aiia-e2e-app:$variant"
    docker build -q --label "aiia.e2e.inputs-sha256=$variant_hash" \
      -t "aiia-e2e-app:$variant" "tests/e2e/images/$variant"
  fi
done

# A stock Django project, not the reference app (tests/e2e/images/stock/Dockerfile): FROM the
# python stand-in, its own pinned wheels downloaded on the host.
stock=tests/e2e/images/stock
stock_hash=$( { inputs_hash "$stock"
                docker image inspect --format '{{ .Id }}' aiia-standin/python:3.13; } \
  | sha256sum | cut -c1-16)
if [ "$(current_hash aiia-e2e-app:stock)" = "$stock_hash" ]; then
  echo "aiia-e2e-app:stock up to date"
else
  echo "building aiia-e2e-app:stock"
  REQUIREMENTS="$stock/requirements.txt" bash app/build-wheels.sh "$stock/wheels"
  docker build -q --label "aiia.e2e.inputs-sha256=$stock_hash" -t aiia-e2e-app:stock "$stock"
fi

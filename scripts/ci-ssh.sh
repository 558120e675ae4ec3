#!/usr/bin/env bash
# CI only: an ssh-agent holding the deploy key, and the host's pinned key, so that Pulumi's
# Docker provider (ssh://) and its remote commands reach the host. The key comes from the
# secret DEPLOY_SSH_KEY and the host key from the secret DEPLOY_KNOWN_HOSTS (a line of
# `ssh-keyscan -t ed25519 vps.eduaiia.com`, checked by hand once): no trust on first use.
set -euo pipefail
: "${DEPLOY_SSH_KEY:?the secret DEPLOY_SSH_KEY is not given to this step}"
: "${DEPLOY_KNOWN_HOSTS:?the secret DEPLOY_KNOWN_HOSTS is not given to this step (see docs/runbooks.md)}"
: "${GITHUB_ENV:?not under GitHub Actions}"
install -d -m 700 ~/.ssh
printf '%s\n' "$DEPLOY_KNOWN_HOSTS" > ~/.ssh/known_hosts
chmod 600 ~/.ssh/known_hosts
socket="${RUNNER_TEMP:-/tmp}/ssh-agent.sock"
eval "$(ssh-agent -a "$socket" -s)" >/dev/null
ssh-add - <<< "$DEPLOY_SSH_KEY" 2>/dev/null
echo "SSH_AUTH_SOCK=$socket" >> "$GITHUB_ENV"
echo "ci-ssh: deploy key loaded into the agent, host key pinned"

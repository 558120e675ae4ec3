#!/usr/bin/env bash
# CI only, in the deploy job of release.yml: an ssh-agent holding the deploy key of the
# stack's GitHub environment (the secret DEPLOY_SSH_KEY of "prod" or "staging", never a
# repository secret: docs/runbooks.md, "The delivery pipeline"), and the host key pinned in
# the stack file (host.ssh.host_key, reviewed with the code: no trust on first use, and no
# second copy of it in a secret). Pulumi's Docker provider (ssh://) and pulumi-command use the
# agent; scripts/diagnostics.sh's ssh and docker use the agent and ~/.ssh/known_hosts.
#   STACK=prod DEPLOY_SSH_KEY=… bash scripts/ci-ssh.sh
# The preview needs none of this: it never reaches the host (.github/workflows/preview.yml).
set -euo pipefail
: "${STACK:?the stack (prod or staging) whose host to reach}"
: "${DEPLOY_SSH_KEY:?the secret DEPLOY_SSH_KEY is not given to this step: it lives in the GitHub environment of the stack (docs/runbooks.md)}"
: "${GITHUB_ENV:?not under GitHub Actions}"
known_host=$(python3 -m scripts.stack_file known-hosts "$STACK")
install -d -m 700 ~/.ssh
printf '%s\n' "$known_host" > ~/.ssh/known_hosts
chmod 600 ~/.ssh/known_hosts
socket="${RUNNER_TEMP:-/tmp}/ssh-agent.sock"
eval "$(ssh-agent -a "$socket" -s)" >/dev/null
# The key stays in the agent for this job only: the runner is discarded after it.
ssh-add - <<< "$DEPLOY_SSH_KEY" 2>/dev/null
echo "SSH_AUTH_SOCK=$socket" >> "$GITHUB_ENV"
echo "ci-ssh: deploy key of $STACK loaded into the agent; host key pinned: ${known_host% *}"

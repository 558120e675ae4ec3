#!/usr/bin/env bash
# CI only: push HEAD to a branch of this repository with the token in PUSH_TOKEN, which
# reaches git through its environment for this one command: never its command line, never
# .git/config (the checkouts keep no credential: persist-credentials: false), so nothing
# that runs after this step, nor anything that ran before it, can use it.
#   PUSH_TOKEN=… bash scripts/push-commit.sh BRANCH
# Without a token (the rollback App is optional) it pushes nothing, says how a person puts
# the commit on the branch, and fails: git must say what the host runs.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: PUSH_TOKEN=… bash scripts/push-commit.sh BRANCH" >&2
  exit 2
fi
branch=$1
commit=$(git rev-parse HEAD)
if [ -z "${PUSH_TOKEN:-}" ]; then
  {
    echo "push-commit: no token to push $commit to $branch (the rollback App is not set up:"
    echo "  docs/runbooks.md, \"The delivery pipeline\"). The host already runs what it says;"
    echo "  put the same commit on $branch from a clone, through a pull request:"
    echo "  git switch $branch && git pull && python3 -m scripts.rollback --stack \"\$STACK\" --no-up"
  } >&2
  exit 1
fi
server=${GITHUB_SERVER_URL:-https://github.com}
header=$(printf 'x-access-token:%s' "$PUSH_TOKEN" | base64 -w0)
if [ -n "${GITHUB_ACTIONS:-}" ]; then
  echo "::add-mask::$header"
fi
# git reads configuration from GIT_CONFIG_COUNT/KEY_n/VALUE_n (git 2.31 or later), for this
# process only; actions/checkout authenticates the same way (http.<url>.extraheader).
GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="http.$server/.extraheader" \
  GIT_CONFIG_VALUE_0="AUTHORIZATION: basic $header" \
  git push origin "HEAD:refs/heads/$branch"
echo "push-commit: pushed $commit to $branch"

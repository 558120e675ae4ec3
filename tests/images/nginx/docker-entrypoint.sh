#!/bin/sh
# Test stand-in for the entrypoint of the official nginx image: when the
# command is nginx, run the executable *.sh in /docker-entrypoint.d (the
# stand-in ships none; upstream's only touch its own default config), then
# exec the command so nginx is PID 1 and receives SIGQUIT on docker stop.
# Contract: tests/images/CONTRACT.md#nginx
set -eu

if [ "${1:-}" = nginx ] || [ "${1:-}" = nginx-debug ]; then
    for script in /docker-entrypoint.d/*.sh; do
        [ -x "$script" ] || continue
        echo "$0: running $script"
        "$script"
    done
fi

exec "$@"

#!/bin/sh
# Test stand-in for the entrypoint of the valkey/valkey image (valkey-container's
# docker-entrypoint.sh): a first argument that is an option or a *.conf file means
# "valkey-server <args>"; started as root it hands the working directory (/data) to valkey
# and runs itself again as valkey (uid 999) via setpriv; started as another user it refuses a
# working directory it cannot write; the umask becomes 0077.
# Contract: tests/images/CONTRACT.md#the-cache-valkey-or-redis
set -eu

if [ "${1#-}" != "${1:-}" ] || [ "${1%.conf}" != "${1:-}" ]; then
    set -- valkey-server "$@"
fi

if [ "${1:-}" = valkey-server ]; then
    if [ "$(id -u)" = 0 ]; then
        find . \! -user valkey -exec chown valkey '{}' +
        exec setpriv --reuid=valkey --regid=valkey --clear-groups -- "$0" "$@"
    elif [ ! -w . ]; then
        echo "error: directory is not writable by current user ($(id -u))" >&2
        exit 1
    fi
fi

if [ "$(umask)" = 0022 ]; then
    umask 0077
fi

exec "$@"

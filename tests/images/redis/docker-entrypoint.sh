#!/bin/sh
# Test stand-in for the entrypoint of the official redis image: a first
# argument that is an option or a *.conf file means "redis-server <args>";
# started as root it hands /data to redis and runs itself again as redis
# (uid 999) via setpriv (upstream uses gosu); the umask becomes 0077.
# Contract: tests/images/CONTRACT.md#redis
set -eu

if [ "${1#-}" != "${1:-}" ] || [ "${1%.conf}" != "${1:-}" ]; then
    set -- redis-server "$@"
fi

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$(umask)" = 0022 ]; then
    umask 0077
fi

exec "$@"

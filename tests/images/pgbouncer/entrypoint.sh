#!/bin/sh
# Test stand-in for the entrypoint of edoburu/pgbouncer. Upstream writes
# /etc/pgbouncer/pgbouncer.ini from DB_* environment variables when the file
# is missing; the Pulumi program always mounts its own ini (read-only), so the
# stand-in only checks that the configuration is there and runs the command.
# Contract: tests/images/CONTRACT.md#pgbouncer
set -eu

config_dir=/etc/pgbouncer
case "${1:-}" in
    pgbouncer | */pgbouncer)
        if [ ! -f "${config_dir}/pgbouncer.ini" ]; then
            echo "entrypoint: ${config_dir}/pgbouncer.ini is missing;" \
                "this stand-in does not generate one from DB_* variables" >&2
            exit 1
        fi
        ;;
esac
exec "$@"

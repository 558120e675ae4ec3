#!/usr/bin/env bash
# Test stand-in for the entrypoint of the official postgres image
# (postgres:15-bookworm). It honours the parts of that entrypoint the Pulumi
# program relies on; see tests/images/CONTRACT.md#postgres:
#   - a first argument starting with "-" means "postgres <args>";
#   - started as root, it prepares $PGDATA and the socket directory and runs
#     itself again as postgres (uid 999) via setpriv (upstream uses gosu);
#   - an empty $PGDATA is initialised: initdb with superuser $POSTGRES_USER
#     (default postgres) and $POSTGRES_PASSWORD, pg_hba.conf = initdb's trust
#     lines for the local socket and loopback plus
#     "host all all all <password_encryption>" (scram-sha-256 by default),
#     $POSTGRES_DB created, /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run
#     against a temporary server that listens on the socket only;
#   - then the command is exec'd (postgres is PID 1).
# Not implemented (not used by the program): POSTGRES_INITDB_WALDIR,
# nss_wrapper for uids without a passwd entry, *.sql.xz / *.sql.zst.
set -Eeuo pipefail

log() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR from $VAR or from the file named by $VAR_FILE.
file_env() {
    local var="$1" default="${2:-}"
    local file_var="${var}_FILE"
    if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
        die "both ${var} and ${file_var} are set (but are exclusive)"
    fi
    local value="$default"
    if [[ -n "${!var:-}" ]]; then
        value="${!var}"
    elif [[ -n "${!file_var:-}" ]]; then
        value="$(<"${!file_var}")"
    fi
    export "${var}=${value}"
    unset "${file_var}"
}

wants_help() {
    local arg
    for arg in "$@"; do
        case "$arg" in
            '-?' | --help | --describe-config | -V | --version) return 0 ;;
        esac
    done
    return 1
}

create_directories() {
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    mkdir -p /var/run/postgresql || :
    chmod 03775 /var/run/postgresql || :
    if [[ "$(id -u)" == 0 ]]; then
        find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
        find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
    fi
}

# Server options given after "postgres" (e.g. -c config_file=...), reused by
# the temporary server so that it reads the same configuration.
server_options=()

# run_sql DBNAME [psql args...]: psql on the local socket as the superuser.
run_sql() {
    local dbname="$1"
    shift
    PGHOST='' PGHOSTADDR='' psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
        --no-password --no-psqlrc --dbname "$dbname" "$@"
}

init_database_directory() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=}"

    if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
        die "database is uninitialized and superuser password is not specified: set POSTGRES_PASSWORD"
    fi

    local -a initdb_args=()
    if [[ -n "$POSTGRES_INITDB_ARGS" ]]; then
        read -r -a initdb_args <<<"$POSTGRES_INITDB_ARGS"
    fi
    # No --auth: initdb writes "trust" for the local socket and for loopback
    # hosts, exactly what upstream's image ends up with.
    initdb --username="$POSTGRES_USER" \
        --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        "${initdb_args[@]}"

    local host_auth="$POSTGRES_HOST_AUTH_METHOD"
    if [[ -z "$host_auth" ]]; then
        host_auth="$(postgres -C password_encryption "${server_options[@]}")"
    fi
    {
        printf '\n'
        if [[ "$host_auth" == trust ]]; then
            printf '# warning trust is enabled for all connections\n'
        fi
        printf 'host all all all %s\n' "$host_auth"
    } >>"$PGDATA/pg_hba.conf"

    local temp_options=("${server_options[@]}" -c "listen_addresses=" -p "${PGPORT:-5432}")
    PGUSER="${PGUSER:-$POSTGRES_USER}" \
        pg_ctl -D "$PGDATA" -o "$(printf '%q ' "${temp_options[@]}")" -w start

    if [[ "$POSTGRES_DB" != postgres ]]; then
        local exists
        exists="$(run_sql postgres --set db="$POSTGRES_DB" --tuples-only \
            <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
        if [[ -z "${exists//[[:space:]]/}" ]]; then
            run_sql postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
        fi
    fi

    local file
    for file in /docker-entrypoint-initdb.d/*; do
        [[ -e "$file" ]] || continue
        case "$file" in
            *.sh)
                if [[ -x "$file" ]]; then
                    log "$0: running $file"
                    "$file"
                else
                    log "$0: sourcing $file"
                    # shellcheck disable=SC1090
                    . "$file"
                fi
                ;;
            *.sql)
                log "$0: running $file"
                run_sql "$POSTGRES_DB" -f "$file"
                ;;
            *.sql.gz)
                log "$0: running $file"
                gunzip -c "$file" | run_sql "$POSTGRES_DB"
                ;;
            *) log "$0: ignoring $file" ;;
        esac
    done

    PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
    log
    log 'PostgreSQL init process complete; ready for start up.'
    log
}

main() {
    if [[ "${1:-}" == -* ]]; then
        set -- postgres "$@"
    fi
    if [[ "${1:-}" != postgres ]] || wants_help "$@"; then
        exec "$@"
    fi
    server_options=("${@:2}")

    create_directories
    if [[ "$(id -u)" == 0 ]]; then
        export HOME=/var/lib/postgresql
        exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
    fi

    if [[ -s "$PGDATA/PG_VERSION" ]]; then
        log
        log 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
        log
    else
        init_database_directory
    fi
    exec "$@"
}

main "$@"

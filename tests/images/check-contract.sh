#!/usr/bin/env bash
# Check an image against the contract the Pulumi program relies on
# (tests/images/CONTRACT.md). Works for the stand-ins and for the real
# upstream images alike, so the two can be compared on a machine with a
# registry:
#
#   tests/images/check-contract.sh KIND IMAGE
#   KIND: postgres | pgbouncer | valkey | redis | nginx | certbot | python | node
#
#   e.g. tests/images/check-contract.sh postgres aiia-standin/postgres:15
#        tests/images/check-contract.sh postgres postgres:15-bookworm
#
# Checks what is cheap to check: tools on PATH, users and uids, image
# metadata (entrypoint, volumes, stop signal) and the entrypoint behaviour the
# program depends on, by running short-lived containers. The image must
# already be present (the script never pulls). Containers are named
# aiia-contract-<kind>-<pid> and removed on exit; bind mounts come from a
# temporary directory, so the engine must run on this machine. Needs openssl
# on the host for the nginx check. Prints one line per check; exits 1 when
# any check fails, 2 on usage errors.
#
# shellcheck disable=SC2016  # single-quoted scripts are expanded in containers
set -euo pipefail

readonly WAIT_SECONDS="${AIIA_CONTRACT_WAIT_SECONDS:-60}"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

(($# == 2)) || usage
readonly KIND="$1" IMAGE="$2"
case "$KIND" in
    postgres | pgbouncer | valkey | redis | nginx | certbot | python | node) ;;
    *) usage ;;
esac

docker image inspect "$IMAGE" >/dev/null 2>&1 || {
    printf 'check-contract: image %s is not present (build or pull it first)\n' "$IMAGE" >&2
    exit 2
}

readonly CONTAINER="aiia-contract-${KIND}-$$"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/aiia-contract.XXXXXX")"
readonly WORK_DIR
cleanup() {
    docker rm -f -v "$CONTAINER" >/dev/null 2>&1 || true
    rm -rf -- "$WORK_DIR"
}
trap cleanup EXIT

failures=0
passes=0

# check DESCRIPTION COMMAND...: run COMMAND, report ok / FAIL with its output.
check() {
    local description="$1" output
    shift
    if output="$("$@" 2>&1)"; then
        printf 'ok   %s: %s\n' "$KIND" "$description"
        passes=$((passes + 1))
    else
        printf 'FAIL %s: %s\n' "$KIND" "$description"
        if [[ -n "$output" ]]; then
            printf '%s\n' "$output" | sed 's/^/       | /' | tail -n 25
        fi
        failures=$((failures + 1))
    fi
}

# expect_equal ACTUAL EXPECTED
expect_equal() {
    [[ "$1" == "$2" ]] || {
        printf 'expected: %s\nactual:   %s\n' "$2" "$1"
        return 1
    }
}

# output_matches ERE COMMAND...: COMMAND succeeds and its output matches ERE.
output_matches() {
    local pattern="$1" output
    shift
    output="$("$@" 2>&1)" || { printf '%s\n' "$output"; return 1; }
    grep -Eq -e "$pattern" <<<"$output" || { printf 'no match for %s in:\n%s\n' "$pattern" "$output"; return 1; }
}

inspect() { docker image inspect --format "$1" "$IMAGE"; }

# in_image [docker run options...] -- COMMAND...: a throw-away container,
# entrypoint bypassed, so tools and files are checked as they are.
in_image() {
    local -a options=()
    while (($#)) && [[ "$1" != -- ]]; do
        options+=("$1")
        shift
    done
    shift
    docker run --rm --entrypoint "" "${options[@]}" "$IMAGE" "$@"
}

tools_on_path() {
    # tools_on_path [docker run options...] -- TOOL...
    local -a options=()
    while (($#)) && [[ "$1" != -- ]]; do
        options+=("$1")
        shift
    done
    shift
    in_image "${options[@]}" -- sh -c '
        missing=""
        for tool in "$@"; do
            command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
        done
        [ -z "$missing" ] || { echo "not on PATH:$missing"; exit 1; }' sh "$@"
}

user_ids() {
    # user_ids NAME UID GID: the image's passwd/group entries
    local actual
    actual="$(in_image -- sh -c 'echo "$(id -u "$1"):$(id -g "$1")"' sh "$1")"
    expect_equal "$actual" "$2:$3"
}

has_volume() { inspect '{{json .Config.Volumes}}' | grep -q "\"$1\""; }

# wait_until DESCRIPTION COMMAND...: retry COMMAND for WAIT_SECONDS.
wait_until() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            printf 'timed out after %ss waiting for: %s\n' "$WAIT_SECONDS" "$*"
            docker logs --tail 30 "$CONTAINER" 2>&1 || true
            return 1
        fi
        if [[ "$(docker inspect --format '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" != true ]]; then
            printf 'container exited while waiting for: %s\n' "$*"
            docker logs --tail 30 "$CONTAINER" 2>&1 || true
            return 1
        fi
        sleep 1
    done
}

process_ids() {
    # process_ids PID: "uid:gid" of a process in the running container
    docker exec "$CONTAINER" sh -c \
        'awk "/^Uid:/ { u = \$2 } /^Gid:/ { g = \$2 } END { print u \":\" g }" "/proc/$1/status"' sh "$1"
}

container_ip() {
    docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$CONTAINER"
}

stops_cleanly() {
    # docker stop with the image's stop signal ends the main process with 0.
    docker stop --time 30 "$CONTAINER" >/dev/null
    expect_equal "$(docker inspect --format '{{.State.ExitCode}}' "$CONTAINER")" 0
}

password_login_refused() {
    local output
    if output="$(docker exec -e PGPASSWORD=wrong "$CONTAINER" psql -h "$1" -U postgres -tAc 'SELECT 1' 2>&1)"; then
        echo "a wrong password was accepted over TCP"
        return 1
    fi
    grep -q 'password authentication failed' <<<"$output" || {
        printf 'refused, but not by password authentication:\n%s\n' "$output"
        return 1
    }
}

# ---------------------------------------------------------------------------
check_postgres() {
    check "entrypoint is docker-entrypoint.sh" \
        expect_equal "$(inspect '{{json .Config.Entrypoint}}')" '["docker-entrypoint.sh"]'
    check "volume /var/lib/postgresql/data" has_volume /var/lib/postgresql/data
    check "tools on PATH: postgres psql pg_isready pg_dump pg_dumpall pg_restore createdb gpg tar sha256sum bash" \
        tools_on_path -- postgres psql pg_isready pg_dump pg_dumpall pg_restore createdb gpg tar \
        sha256sum bash
    check "user postgres is 999:999" user_ids postgres 999 999

    mkdir -p "$WORK_DIR/conf" "$WORK_DIR/initdb"
    cat >"$WORK_DIR/conf/postgresql.conf" <<'EOF'
listen_addresses = '*'
max_connections = 50
shared_buffers = 16MB
EOF
    printf 'CREATE TABLE contract_marker (id integer);\n' >"$WORK_DIR/initdb/10-table.sql"
    printf '#!/bin/sh\nid -u >/tmp/contract-init-sh-uid\n' >"$WORK_DIR/initdb/20-script.sh"
    chmod 0755 "$WORK_DIR/initdb/20-script.sh"
    chmod 0755 "$WORK_DIR" "$WORK_DIR/conf" "$WORK_DIR/initdb"
    chmod 0644 "$WORK_DIR/conf/postgresql.conf" "$WORK_DIR/initdb/10-table.sql"

    # First argument "-c": the entrypoint must prepend "postgres".
    check "starts with POSTGRES_PASSWORD, PGDATA in a subdirectory, -c config_file=" \
        docker run -d --name "$CONTAINER" \
        -e POSTGRES_PASSWORD=contract-secret \
        -e PGDATA=/var/lib/postgresql/data/pgdata \
        -v "$WORK_DIR/conf:/etc/postgresql/aiia:ro" \
        -v "$WORK_DIR/initdb:/docker-entrypoint-initdb.d:ro" \
        "$IMAGE" -c config_file=/etc/postgresql/aiia/postgresql.conf
    check "health check 'pg_isready -U postgres -h 127.0.0.1' passes" \
        wait_until docker exec "$CONTAINER" pg_isready -U postgres -h 127.0.0.1
    check "server (PID 1) runs as 999:999" expect_equal "$(process_ids 1)" 999:999
    check "initdb.d: *.sql ran, executable *.sh ran as postgres" \
        expect_equal "$(printf 'SELECT count(*) FROM contract_marker;\n' |
            docker exec -i "$CONTAINER" psql -U postgres -v ON_ERROR_STOP=1 -tA -f - 2>&1)/$(
            docker exec "$CONTAINER" cat /tmp/contract-init-sh-uid 2>&1)" 0/999
    check "config_file is used (max_connections = 50)" \
        expect_equal "$(docker exec "$CONTAINER" psql -U postgres -tAc 'SHOW max_connections')" 50
    local hba expected_hba
    hba="$(docker exec "$CONTAINER" sh -c 'grep -v "^[[:space:]]*#" "$PGDATA/pg_hba.conf"' | awk 'NF { $1 = $1; print }')" || true
    expected_hba="local all all trust
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
local replication all trust
host replication all 127.0.0.1/32 trust
host replication all ::1/128 trust
host all all all scram-sha-256"
    check "pg_hba.conf: trust on socket and loopback, scram-sha-256 elsewhere" \
        expect_equal "$hba" "$expected_hba"
    local ip
    ip="$(container_ip)" || true
    check "TCP login with a wrong password is refused" password_login_refused "$ip"
    check "TCP login with POSTGRES_PASSWORD works" \
        expect_equal "$(docker exec -e PGPASSWORD=contract-secret "$CONTAINER" \
            psql -h "$ip" -U postgres -tAc 'SELECT 1' 2>&1)" 1
    check "docker stop shuts the server down cleanly" stops_cleanly
}

# ---------------------------------------------------------------------------
check_pgbouncer() {
    check "tools on PATH as 70:70: pgbouncer pg_isready psql" \
        tools_on_path --user 70:70 -- pgbouncer pg_isready psql

    mkdir -p "$WORK_DIR/pgbouncer"
    cat >"$WORK_DIR/pgbouncer/pgbouncer.ini" <<'EOF'
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
unix_socket_dir =
logfile =
pidfile =
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
pool_mode = transaction
EOF
    printf '"contract" "contract-secret"\n' >"$WORK_DIR/pgbouncer/userlist.txt"
    chown -R 70:70 "$WORK_DIR/pgbouncer"
    chmod 0600 "$WORK_DIR/pgbouncer/"*
    chmod 0755 "$WORK_DIR"

    check "starts as 70:70 on a read-only root with only /tmp writable" \
        docker run -d --name "$CONTAINER" --user 70:70 --read-only --tmpfs /tmp \
        -v "$WORK_DIR/pgbouncer:/etc/pgbouncer:ro" \
        "$IMAGE" pgbouncer /etc/pgbouncer/pgbouncer.ini
    check "health check 'pg_isready -h 127.0.0.1 -p 6432' passes" \
        wait_until docker exec "$CONTAINER" pg_isready -h 127.0.0.1 -p 6432
    check "pgbouncer (PID 1) runs as 70:70" expect_equal "$(process_ids 1)" 70:70
}

# ---------------------------------------------------------------------------
# The cache: Valkey (the default image) or Redis (a stack that keeps 7.2), the same contract
# but for the programs' names (valkey-server/valkey-cli, redis-server/redis-cli) and the
# versions: Valkey 8.1, whose 8.1.0 release notes call it compatible with Redis OSS 7.2.4
# (valkey 00-RELEASENOTES), or Redis 7 or later.
check_valkey() {
    check_cache valkey-server valkey-cli 'v=8\.1\.'
}

check_redis() {
    check "volume /data" has_volume /data
    check_cache redis-server redis-cli 'v=([7-9]|[1-9][0-9])\.'
}

# check_cache SERVER CLI VERSION_ERE
check_cache() {
    local server="$1" cli="$2" version="$3"
    check "tools on PATH: $server $cli" tools_on_path -- "$server" "$cli"
    check "$server --version matches $version" \
        in_image -- sh -c "$server --version | grep -Eq '$version'"
    check "/data is writable by 999:999" \
        in_image --user 999:999 -- sh -c 'touch /data/.contract && rm /data/.contract'

    mkdir -p "$WORK_DIR/redis"
    cat >"$WORK_DIR/redis/redis.conf" <<'EOF'
bind * -::*
protected-mode no
port 6379
maxmemory 50mb
maxmemory-policy allkeys-lru
user default on nopass -@all +ping
user contract on >contract-secret ~contract:* +@all
EOF
    chown -R 999:999 "$WORK_DIR/redis"
    chmod 0600 "$WORK_DIR/redis/redis.conf"
    chmod 0755 "$WORK_DIR"

    # A volume mounted at /data, as the program does: the image's /data is copied into it.
    check "starts as 999:999 with a read-only config directory and a volume at /data" \
        docker run -d --name "$CONTAINER" --user 999:999 --read-only \
        -v "$WORK_DIR/redis:/usr/local/etc/redis:ro" -v "/data" \
        "$IMAGE" "$server" /usr/local/etc/redis/redis.conf
    check "health check '$cli ping' passes" \
        wait_until docker exec "$CONTAINER" sh -c "[ \"\$($cli ping)\" = PONG ]"
    check "$server (PID 1) runs as 999:999" expect_equal "$(process_ids 1)" 999:999
    check "default user may PING only" \
        docker exec "$CONTAINER" sh -c "$cli get contract:x | grep -q NOPERM"
    check "ACL user from the config works, maxmemory applied" \
        expect_equal "$(docker exec "$CONTAINER" sh -c "
            $cli --no-auth-warning --user contract --pass contract-secret set contract:x 1 >/dev/null &&
            $cli --no-auth-warning --user contract --pass contract-secret config get maxmemory | tail -n 1")" 52428800
    check "the ACL user is refused keys outside its prefix" \
        docker exec "$CONTAINER" sh -c "$cli --no-auth-warning --user contract --pass contract-secret get other:x | grep -q NOPERM"
    local ip
    ip="$(container_ip)" || true
    check "answers clients on the network (protected-mode no honoured)" \
        expect_equal "$(docker exec "$CONTAINER" "$cli" -h "$ip" ping)" PONG
}

# ---------------------------------------------------------------------------
check_nginx() {
    check "stop signal is SIGQUIT" expect_equal "$(inspect '{{.Config.StopSignal}}')" SIGQUIT
    check "tools on PATH: nginx curl" tools_on_path -- nginx curl
    check "/etc/nginx/mime.types exists" in_image -- test -f /etc/nginx/mime.types
    check "user and group nginx exist" \
        in_image -- sh -c 'id -u nginx >/dev/null && id -g nginx >/dev/null'
    check "/var/cache/nginx and /var/run are writable" \
        in_image -- sh -c 'touch /var/cache/nginx/.c /var/run/.c && rm /var/cache/nginx/.c /var/run/.c'

    mkdir -p "$WORK_DIR/nginx/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=contract.localhost \
        -keyout "$WORK_DIR/nginx/tls/privkey.pem" -out "$WORK_DIR/nginx/tls/fullchain.pem" \
        >/dev/null 2>&1
    cat >"$WORK_DIR/nginx/nginx.conf" <<'EOF'
user nginx;
worker_processes 1;
pid /var/run/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    gzip on;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    limit_req_zone $binary_remote_addr zone=contract:1m rate=200r/s;
    client_body_temp_path /var/cache/nginx/client_temp;
    proxy_temp_path /var/cache/nginx/proxy_temp;
    server {
        listen 127.0.0.1:8080;
        location = /nginx-health { return 200 "ok\n"; }
        location = /nginx-status { stub_status; }
    }
    keepalive_timeout 30s;
    keepalive_min_timeout 30s;
    server {
        listen 8443 ssl;
        http2 on;
        ssl_certificate /etc/aiia-nginx/tls/fullchain.pem;
        ssl_certificate_key /etc/aiia-nginx/tls/privkey.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            limit_req zone=contract burst=20 nodelay;
            add_header X-Connection $connection_upgrade always;
            return 200 "tls\n";
        }
    }
}
EOF
    chmod -R a+rX "$WORK_DIR"

    local nginx_conf=/etc/aiia-nginx/nginx.conf
    check "starts with 'nginx -c $nginx_conf -g daemon off;'" \
        docker run -d --name "$CONTAINER" -v "$WORK_DIR/nginx:/etc/aiia-nginx:ro" \
        "$IMAGE" nginx -c "$nginx_conf" -g 'daemon off;'
    check "health check 'curl -fsS -o /dev/null http://127.0.0.1:8080/nginx-health' passes" \
        wait_until docker exec "$CONTAINER" curl -fsS -o /dev/null http://127.0.0.1:8080/nginx-health
    check "master (PID 1) runs as root, writes /var/run/nginx.pid" \
        expect_equal "$(process_ids 1)/$(docker exec "$CONTAINER" cat /var/run/nginx.pid)" 0:0/1
    check "workers run as nginx" \
        expect_equal "$(docker exec "$CONTAINER" sh -c '
            for status in /proc/[0-9]*/status; do
                grep -q "^PPid:[[:space:]]*1$" "$status" 2>/dev/null || continue
                awk "/^Uid:/ { print \$2 }" "$status"
            done | sort -u')" "$(in_image -- id -u nginx)"
    check "nginx 1.27.4 or later (keepalive_min_timeout, http2 on)" \
        sh -c "docker exec '$CONTAINER' nginx -v 2>&1 | awk -F/ '{ split(\$2, v, \".\"); exit !(v[1] > 1 || (v[1] == 1 && (v[2] > 27 || (v[2] == 27 && v[3] >= 4)))) }'"
    check "TLS with HTTP/2 (ssl, http2, map, limit_req modules)" \
        expect_equal "$(docker exec "$CONTAINER" curl -ksS --http2 -o /dev/null \
            -w '%{http_version}' https://127.0.0.1:8443/)" 2
    check "stub_status answers" \
        docker exec "$CONTAINER" sh -c 'curl -fsS http://127.0.0.1:8080/nginx-status | grep -q "Active connections"'
    check "'nginx -c … -t' then '-s reload' via docker exec" \
        docker exec "$CONTAINER" sh -c "nginx -c $nginx_conf -t && nginx -c $nginx_conf -s reload"
    check "still healthy after reload" \
        wait_until docker exec "$CONTAINER" curl -fsS -o /dev/null http://127.0.0.1:8080/nginx-health
    check "docker stop (SIGQUIT) exits gracefully with 0" stops_cleanly
}

# ---------------------------------------------------------------------------
check_certbot() {
    check "entrypoint is certbot" \
        expect_equal "$(inspect '{{json .Config.Entrypoint}}')" '["certbot"]'
    check "volume /etc/letsencrypt" has_volume /etc/letsencrypt
    check "volume /var/lib/letsencrypt" has_volume /var/lib/letsencrypt
    check "'certbot --version' is 5 or later (the pin's major)" \
        output_matches '^certbot ([5-9]|[1-9][0-9])\.' docker run --rm "$IMAGE" --version
    check "webroot plugin available (certonly --webroot -w …)" \
        output_matches '--webroot-path' docker run --rm "$IMAGE" --help webroot
}

# ---------------------------------------------------------------------------
check_python() {
    check "tools on PATH: python3 python" tools_on_path -- python3 python
    check "python3 on PATH is 3.13 (Debian 13's)" \
        in_image -- python3 -c 'import sys; assert sys.version_info[:2] == (3, 13), sys.version'
    check "default user is root" expect_equal "$(in_image -- id -u)" 0
    check "python3 -m venv makes a venv with pip and ssl" \
        in_image -- sh -c 'python3 -m venv /tmp/venv && /tmp/venv/bin/python -m pip --version >/dev/null &&
            /tmp/venv/bin/python -c "import ssl, sqlite3"'
    check "CA bundle /etc/ssl/certs/ca-certificates.crt" \
        in_image -- test -s /etc/ssl/certs/ca-certificates.crt
    check "a shell and useradd/groupadd for derived images" tools_on_path -- sh useradd groupadd
}

# ---------------------------------------------------------------------------
check_node() {
    check "tools on PATH: node npm git" tools_on_path -- node npm git
    check "node on PATH is 24" output_matches '^v24\.' docker run --rm "$IMAGE" node --version
    check "CA bundle /etc/ssl/certs/ca-certificates.crt" \
        in_image -- test -s /etc/ssl/certs/ca-certificates.crt
}

"check_${KIND}"
printf '%s %s: %d passed, %d failed\n' "$IMAGE" "$KIND" "$passes" "$failures"
((failures == 0))

#!/usr/bin/env bash
# Test-bed scaffolding: build the stand-in images the e2e tests run instead of
# the upstream images named in production config (no registry on test hosts).
#
#   tests/images/build-standins.sh [--force] [NAME...]
#
# 1. aiia-standin/debian:<suite>: a Debian minbase root filesystem made with
#    debootstrap from the host's own apt mirror, then docker import. bookworm
#    for most stand-ins; forky for those whose upstream is newer than anything
#    bookworm packages (nginx: the program relies on directives of nginx 1.27.4+).
# 2. one image per folder tests/images/<NAME>/ (Dockerfile + files), FROM the
#    base its entry below names.
#
# Idempotent and fast when cached: an image is skipped when its tag exists and
# carries the label aiia.standin.inputs-sha256 equal to the hash of its build
# inputs (the folder's files, and for stand-ins the base image id; for the base
# the suite, the mirrors and tests/images/debian/). --force rebuilds anyway.
# NAME... limits the run to some stand-ins (the base is always ensured).
# Run as root (debootstrap). Contract the images honour: tests/images/CONTRACT.md
set -euo pipefail

IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly IMAGES_DIR
readonly HASH_LABEL=aiia.standin.inputs-sha256
# Bump when the base recipe in this script changes in a way that matters.
readonly BASE_RECIPE_VERSION=2
readonly CACHE_DIR="${AIIA_STANDIN_CACHE_DIR:-/var/cache/aiia-standins}"
readonly LOCK_FILE="${CACHE_DIR}/build.lock"

# name | tag | upstream image it stands in for | Debian suite of its base
# (each Dockerfile says FROM aiia-standin/debian:<that suite>; checked below)
readonly STANDINS=(
    "postgres|aiia-standin/postgres:15|postgres:15-bookworm|bookworm"
    "postgres-17|aiia-standin/postgres:17|postgres:17-trixie|trixie"
    "pgbouncer|aiia-standin/pgbouncer:1|edoburu/pgbouncer|bookworm"
    "redis|aiia-standin/redis:7|redis:7-bookworm|bookworm"
    "valkey|aiia-standin/valkey:8|valkey/valkey:8.1-trixie|trixie"
    "nginx|aiia-standin/nginx:1|nginx:1.30|forky"
    "certbot|aiia-standin/certbot:5|certbot/certbot:v5|forky"
    "python|aiia-standin/python:3.13|python:3.13-slim-trixie|trixie"
    "node|aiia-standin/node:24|node:24|forky"
    "pebble|aiia-standin/pebble:2|ghcr.io/letsencrypt/pebble|bookworm"
    "sshd|aiia-standin/sshd:9|an SSH backup target (test only)|bookworm"
    "vps-12|aiia-standin/vps:12|a Debian 12 VPS|bookworm"
    "vps-13|aiia-standin/vps:13|a Debian 13 VPS|trixie"
)
base_tag() { printf 'aiia-standin/debian:%s' "$1"; }

log() { printf 'build-standins: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

force=false
selected=()
while (($#)); do
    case "$1" in
        --force) force=true ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) selected+=("$1") ;;
    esac
    shift
done

# ---------------------------------------------------------------------------
# Mirror discovery: the URI the host's apt uses for SUITE (one-line .list or
# deb822 .sources). Only http(s) mirrors are usable by debootstrap here.
# ---------------------------------------------------------------------------
apt_uri_for_suite() {
    local suite="$1" file found=""
    local -a files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    for file in "${files[@]}"; do
        [[ -r "$file" ]] || continue
        if [[ "$file" == *.sources ]]; then
            found+="$(awk -v suite="$suite" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    types = ""; uris = ""; suites = ""; enabled = "yes"
                    for (i = 1; i <= NF; i++) {
                        line = $i
                        if (line ~ /^[ \t]*#/ || index(line, ":") == 0) continue
                        key = tolower(substr(line, 1, index(line, ":") - 1))
                        value = substr(line, index(line, ":") + 1)
                        gsub(/^[ \t]+|[ \t]+$/, "", value)
                        if (key == "types") types = value
                        else if (key == "uris") uris = value
                        else if (key == "suites") suites = value
                        else if (key == "enabled") enabled = tolower(value)
                    }
                    if (enabled == "no" || (" " types " ") !~ / deb /) next
                    n = split(suites, names, /[ \t]+/)
                    for (j = 1; j <= n; j++) if (names[j] == suite) { split(uris, u, /[ \t]+/); print u[1] }
                }' "$file")"$'\n'
        else
            found+="$(awk -v suite="$suite" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) print $i
                }' "$file")"$'\n'
        fi
    done
    local uri
    while IFS= read -r uri; do
        if [[ "$uri" =~ ^https?:// ]]; then
            printf '%s\n' "${uri%/}"
            return 0
        fi
    done <<<"$found"
    return 1
}

# ---------------------------------------------------------------------------
# Hashing of build inputs
# ---------------------------------------------------------------------------
hash_dir() {
    # Relative path, mode and content of every file: renames, chmod +x and
    # edits all change the hash; timestamps do not.
    local dir="$1"
    (
        cd "$dir"
        find . -type f -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' path; do
            printf '%s %s %s\n' "$path" "$(stat -c '%a' "$path")" "$(sha256sum <"$path" | cut -d' ' -f1)"
        done
    ) | sha256sum | cut -d' ' -f1
}

hash_text() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

image_label() {
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

image_is_current() {
    local tag="$1" inputs_hash="$2"
    [[ "$force" == false && "$(image_label "$tag" "$HASH_LABEL")" == "$inputs_hash" ]]
}

built=()
skipped=()
# Image ids a rebuild left without a tag; removed at the end (children first).
superseded=()

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

note_superseded() {
    local old_id="$1" tag="$2"
    if [[ -n "$old_id" && "$old_id" != "$(image_id "$tag")" ]]; then
        superseded=("$old_id" "${superseded[@]}")
    fi
}

remove_superseded() {
    local id
    for id in "${superseded[@]}"; do
        # Fails harmlessly when a container or another tag still uses it.
        if docker image rm "$id" >/dev/null 2>&1; then
            log "removed superseded image ${id#sha256:}"
        fi
    done
}

# ---------------------------------------------------------------------------
# Base image: debootstrap + docker import
# ---------------------------------------------------------------------------
# The suites apt reads in the base: a stable release has -updates and -security;
# testing (forky) has only itself (its security fixes arrive through testing).
base_suites() {
    case "$1" in
        bookworm | trixie) printf '%s %s-updates|%s-security' "$1" "$1" "$1" ;;
        *) printf '%s|' "$1" ;;
    esac
}

# debootstrap's script for a suite it may not know yet (bookworm's debootstrap
# predates forky): testing and unstable are bootstrapped alike.
debootstrap_script() {
    if [[ -e "/usr/share/debootstrap/scripts/$1" ]]; then
        printf '%s' "/usr/share/debootstrap/scripts/$1"
    else
        printf '%s' /usr/share/debootstrap/scripts/sid
    fi
}

build_base() {
    local suite="$1" base mirror security_mirror suites security_suites
    base="$(base_tag "$suite")"
    IFS='|' read -r suites security_suites <<<"$(base_suites "$suite")"
    # A suite the host's apt does not list (forky on a bookworm host) comes from
    # the mirror the host uses for bookworm.
    mirror="${AIIA_DEBIAN_MIRROR:-$(apt_uri_for_suite "$suite" || apt_uri_for_suite bookworm || echo http://deb.debian.org/debian)}"
    security_mirror="${AIIA_DEBIAN_SECURITY_MIRROR:-$(apt_uri_for_suite "${suite}-security" || apt_uri_for_suite bookworm-security || echo http://deb.debian.org/debian-security)}"

    local inputs_hash
    inputs_hash="$(hash_text "recipe=${BASE_RECIPE_VERSION} suite=${suite} mirror=${mirror} security=${security_mirror} files=$(hash_dir "${IMAGES_DIR}/debian")")"
    if image_is_current "$base" "$inputs_hash"; then
        log "skip  ${base} (inputs unchanged)"
        skipped+=("$base")
        return 0
    fi

    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing: apt-get install -y debootstrap"
    [[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root"

    local started=$SECONDS work old_id
    old_id="$(image_id "$base")"
    work="$(mktemp -d "${CACHE_DIR}/rootfs.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf -- '${work}'" EXIT
    local rootfs="${work}/rootfs"
    log "build ${base}: debootstrap ${suite} minbase from ${mirror}"
    # One .deb cache per suite: the same package has other versions elsewhere.
    mkdir -p "${CACHE_DIR}/debs-${suite}"
    if ! debootstrap --variant=minbase --components=main --cache-dir="${CACHE_DIR}/debs-${suite}" \
        "$suite" "$rootfs" "$mirror" "$(debootstrap_script "$suite")" \
        >"${work}/debootstrap.log" 2>&1; then
        tail -n 30 "${work}/debootstrap.log" >&2
        die "debootstrap failed (last lines of its log above)"
    fi

    cp -a "${IMAGES_DIR}/debian/overlay/." "$rootfs/"
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${mirror}
Suites: ${suites}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    if [[ -z "$security_suites" ]]; then
        # testing's Release carries a Valid-Until a week ahead; the package mirrors our
        # machines reach serve snapshots older than that, which apt then refuses
        # ("Release file … is expired"). The signature is still checked.
        printf 'Acquire::Check-Valid-Until "false";\n' \
            >"$rootfs/etc/apt/apt.conf.d/90aiia-standin-snapshot-mirror"
    fi
    if [[ -n "$security_suites" ]]; then
        cat >>"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF

Types: deb
URIs: ${security_mirror}
Suites: ${security_suites}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    # What the overlay's dpkg excludes would have kept out, had they existed
    # during debootstrap; apt state that only the bootstrap needed.
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs/usr/share/man/"* "$rootfs/usr/share/info/"* \
        "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin \
        "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/log/"*.log
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    # Docker provides these at run time.
    : >"$rootfs/etc/hostname"
    : >"$rootfs/etc/resolv.conf"

    tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "LABEL org.opencontainers.image.description=\"Test stand-in base: Debian ${suite} minbase (debootstrap from ${mirror})\"" \
        --change "LABEL ${HASH_LABEL}=${inputs_hash}" \
        --change 'CMD ["bash"]' \
        --message "debootstrap ${suite} minbase from ${mirror}" \
        - "$base" >/dev/null
    rm -rf -- "$work"
    trap - EXIT
    note_superseded "$old_id" "$base"
    log "built ${base} in $((SECONDS - started))s"
    built+=("$base")
}

# ---------------------------------------------------------------------------
# Stand-ins: docker build per folder
# ---------------------------------------------------------------------------
build_standin() {
    local name="$1" tag="$2" upstream="$3" suite="$4"
    local context="${IMAGES_DIR}/${name}"
    [[ -f "${context}/Dockerfile" ]] || die "${context}/Dockerfile is missing"
    grep -qx "FROM $(base_tag "$suite")" "${context}/Dockerfile" \
        || die "${context}/Dockerfile must say FROM $(base_tag "$suite") (its entry in STANDINS)"

    local base_id inputs_hash copied="" source
    base_id="$(docker image inspect --format '{{.Id}}' "$(base_tag "$suite")")"
    # A stand-in that copies a file out of another (COPY --from=aiia-standin/…, listed after
    # it above) is rebuilt when that one is.
    while IFS= read -r source; do
        [[ -n "$(image_id "$source")" ]] || die "${tag} copies from ${source}: build it first"
        copied+=" ${source}=$(image_id "$source")"
    done < <(sed -n 's|^COPY --from=\(aiia-standin/[^ ]*\) .*|\1|p' "${context}/Dockerfile")
    inputs_hash="$(hash_text "base=${base_id}${copied} files=$(hash_dir "$context")")"
    if image_is_current "$tag" "$inputs_hash"; then
        log "skip  ${tag} (inputs unchanged)"
        skipped+=("$tag")
        return 0
    fi

    local started=$SECONDS build_log old_id
    old_id="$(image_id "$tag")"
    build_log="$(mktemp "${CACHE_DIR}/build-${name}.XXXXXX.log")"
    log "build ${tag} (stand-in for ${upstream})"
    # DOCKER_BUILDKIT=0: Debian's dockerd 20.10 and a client without buildx.
    if ! DOCKER_BUILDKIT=0 docker build \
        --tag "$tag" \
        --label "${HASH_LABEL}=${inputs_hash}" \
        --label "aiia.standin.upstream=${upstream}" \
        "$context" >"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        die "docker build of ${tag} failed (log: ${build_log})"
    fi
    rm -f -- "$build_log"
    note_superseded "$old_id" "$tag"
    log "built ${tag} in $((SECONDS - started))s"
    built+=("$tag")
}

main() {
    local started=$SECONDS
    mkdir -p "$CACHE_DIR"
    docker info >/dev/null 2>&1 || die "no Docker engine answers: run tests/engine/ensure-dockerd.sh"

    # One build at a time on a machine (parallel test runs share the engine).
    exec 9>"$LOCK_FILE"
    flock 9

    local entry name tag upstream suite known want
    for want in "${selected[@]}"; do
        known=false
        for entry in "${STANDINS[@]}"; do
            [[ "${entry%%|*}" == "$want" ]] && known=true
        done
        [[ "$known" == true ]] || die "unknown stand-in '${want}'"
    done

    # bookworm always (the e2e images build on it too), then any other suite a
    # selected stand-in needs.
    local -a suites=(bookworm)
    for entry in "${STANDINS[@]}"; do
        IFS='|' read -r name tag upstream suite <<<"$entry"
        if ((${#selected[@]})) && [[ " ${selected[*]} " != *" ${name} "* ]]; then
            continue
        fi
        [[ " ${suites[*]} " == *" ${suite} "* ]] || suites+=("$suite")
    done
    for suite in "${suites[@]}"; do
        build_base "$suite"
    done
    for entry in "${STANDINS[@]}"; do
        IFS='|' read -r name tag upstream suite <<<"$entry"
        if ((${#selected[@]})) && [[ " ${selected[*]} " != *" ${name} "* ]]; then
            continue
        fi
        build_standin "$name" "$tag" "$upstream" "$suite"
    done

    remove_superseded
    log "built ${#built[@]}: ${built[*]:-none}"
    log "skipped ${#skipped[@]}: ${skipped[*]:-none}"
    log "done in $((SECONDS - started))s"
}

main

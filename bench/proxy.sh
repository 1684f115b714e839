#!/usr/bin/env bash
# Pull-through proxy benchmark: one large layer of random data pulled with curl and with
# skopeo three ways — straight from the upstream registry, through regkeeper's proxy,
# and through Debian's docker-registry (distribution 2.8) configured as a pull-through
# cache — cold and warm, the proxy's peak RSS as blobs grow, and the manifest request
# rate (wrk) the same three ways. See "Pull-through proxy" in bench/README.md.
#
#   bench/proxy.sh [ROUNDS]     # default 3; the tables show medians over rounds
#
# Everything runs on 127.0.0.1 in a temporary directory: a CA made with openssl; the
# upstream, a docker-registry serving HTTPS with token auth from
# bench/proxy/token_issuer.py; the images, written by bench/proxy/make_image.py and
# pushed with skopeo; then the proxies, one at a time.
#
# Installs what is missing: docker-registry, skopeo, wrk, curl, jq, openssl (apt,
# without recommends); PyJWT and cryptography into target/bench-tools/venv (pip). Builds
# regkeeper in release mode when the regkeeper path is selected.
#
# Environment:
#   PATHS        which ways to pull: "direct distribution regkeeper" (default)
#   PARTS        "pull manifest" (default), or one of them
#   CLIENTS      pull clients: "curl skopeo" (default)
#   LAYER_MIB    the large layer in MiB (default 512)
#   SMALL_MIB    a smaller layer pulled with curl before it, to show whether the proxy's
#                peak RSS grows with the blob (default 64; 0 to skip)
#   DURATION     seconds per wrk run (default 10)
#   CONNECTIONS  wrk connections (default 32)     THREADS  wrk threads (default 2)
#   CACHE_MAX_BYTES  REGKEEPER_PROXY_CACHE_MAX_BYTES for the cached runs (default 4 GiB)
#   REGISTRY_LOG_LEVEL  log level of both docker-registry processes (default warn; their
#                access logs are off)
#   REGKEEPER_SERVE_ENV  extra KEY=VALUE words for `regkeeper serve`'s environment
#   RESULTS      JSON results file (default target/bench/proxy.json)
#   KEEP_WORK    set to keep the temporary directory (configs, logs, raw runs)
#   BUILD=0      use target/release/regkeeper as it is instead of building it
#   REGKEEPER_BIN  another regkeeper binary to run (not built; e.g. a debug build to
#                check the set-up, whose figures mean nothing)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${1:-3}
PATHS=${PATHS:-direct distribution regkeeper}
PARTS=${PARTS:-pull manifest}
CLIENTS=${CLIENTS:-curl skopeo}
LAYER_MIB=${LAYER_MIB:-512}
if [[ -z "${SMALL_MIB:-}" ]]; then
    SMALL_MIB=64
    ((LAYER_MIB > 64)) || SMALL_MIB=$(((LAYER_MIB + 3) / 4))
fi
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
CACHE_MAX_BYTES=${CACHE_MAX_BYTES:-4294967296}
REGISTRY_LOG_LEVEL=${REGISTRY_LOG_LEVEL:-warn}
REGKEEPER_SERVE_ENV=${REGKEEPER_SERVE_ENV:-}
RESULTS=${RESULTS:-$ROOT/target/bench/proxy.json}
export CARGO_TARGET_DIR="$ROOT/target"
REGKEEPER=${REGKEEPER_BIN:-$CARGO_TARGET_DIR/release/regkeeper}
REGISTRY=/usr/bin/docker-registry
SKOPEO=/usr/bin/skopeo
VENV="$ROOT/target/bench-tools/venv"
PYTHON="$VENV/bin/python"
HERE="$ROOT/bench/proxy"

# Fixed, benchmark-only values.
ADMIN_TOKEN=rk_bench_proxy_admin_token_0123456789abcdef
SERVICE=bench-registry
ISSUER=regkeeper-bench-issuer
PULLER=puller
PULLER_PASSWORD=bench-puller-password
PUSHER=pusher
PUSHER_PASSWORD=bench-pusher-password
BIG_REPO=bench/big
SMALL_REPO=bench/small
TAG=1
ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf '==> error: %s\n' "$*" >&2
    exit 1
}
has() { # LIST WORD
    [[ " $1 " == *" $2 "* ]]
}
as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# --- Prerequisites ------------------------------------------------------------

missing=()
for package in docker-registry skopeo wrk curl jq openssl python3; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' || missing+=("$package")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if ! "$PYTHON" -c 'import jwt, cryptography' 2>/dev/null; then
    say "installing PyJWT and cryptography into target/bench-tools/venv"
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        as_root apt-get install -y -qq --no-install-recommends python3-venv >&2
    fi
    mkdir -p "$ROOT/target/bench-tools"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q pyjwt cryptography >&2
fi

if has "$PATHS" regkeeper; then
    if [[ "${BUILD:-1}" != 0 && -z "${REGKEEPER_BIN:-}" ]]; then
        say "building regkeeper (release)"
        cargo build --release -p regkeeper >&2
    fi
    [[ -x "$REGKEEPER" ]] || die "no $REGKEEPER (build it, or leave regkeeper out of PATHS)"
fi

# --- Processes ----------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-proxy.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "${KEEP_WORK:-}" ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # PID — stops one process this script started
    local pid=$1 keep=() other
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for other in "${PIDS[@]}"; do
        [[ "$other" == "$pid" ]] || keep+=("$other")
    done
    PIDS=("${keep[@]}")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_line() { # FILE PATTERN PID — prints the first match of PATTERN in FILE
    local found
    for _ in $(seq 1 600); do
        found=$(grep -o -m1 "$2" "$1" 2>/dev/null || true)
        [[ -n "$found" ]] && { printf '%s\n' "$found"; return 0; }
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

wait_for_http() { # URL PID [CURL ARGS...] — until URL answers with any HTTP status
    local url=$1 pid=$2 code
    shift 2
    for _ in $(seq 1 600); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 2 "$@" "$url" || true)
        [[ "$code" != 000 ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

cpu_ticks() { # PID... — user+system clock ticks of the processes together
    local pid total=0 ticks
    for pid in "$@"; do
        ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + ticks))
    done
    echo "$total"
}

settle() { # PID... — waits until the processes have stopped using CPU (at most 60 s)
    local before after
    for _ in $(seq 1 300); do
        before=$(cpu_ticks "$@")
        sleep 0.2
        after=$(cpu_ticks "$@")
        ((after - before <= 1)) && return 0
    done
    say "  warning: processes $* still busy after 60 s"
}

reset_peak_rss() { # PID — resets VmHWM to the current RSS
    echo 5 >"/proc/$1/clear_refs"
}
peak_rss_kib() { # PID
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}
written_bytes() { # PID — bytes the process has written to sockets and files (wchar)
    awk '/^wchar:/ { print $2 }' "/proc/$1/io"
}
rss_kib() { # PID
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

HZ=$(getconf CLK_TCK)

# --- Certificates -------------------------------------------------------------

# A CA, a server certificate for 127.0.0.1 (the upstream and the token issuer), and a
# self-signed token-signing certificate that distribution trusts through its
# rootcertbundle (it insists on the digitalSignature key usage).
make_certificates() {
    local dir=$WORK/tls
    mkdir -p "$dir/cert-dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj '/CN=regkeeper bench CA' -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=127.0.0.1' \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
        'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=regkeeper bench token signer' \
        -keyout "$dir/signing.key" -out "$dir/signing.pem" -addext 'keyUsage=critical,digitalSignature' 2>/dev/null
    # containers/image (skopeo) trusts every *.crt in its --cert-dir.
    cp "$dir/ca.pem" "$dir/cert-dir/ca.crt"
    CA=$dir/ca.pem
    CERT_DIR=$dir/cert-dir
}

# --- Upstream: token issuer and docker-registry --------------------------------

start_issuer() {
    jq -n --arg puller "$PULLER" --arg pp "$PULLER_PASSWORD" --arg pusher "$PUSHER" --arg sp "$PUSHER_PASSWORD" \
        '{($puller): {password: $pp, actions: ["pull"]}, ($pusher): {password: $sp, actions: ["pull", "push"]}}' \
        >"$WORK/issuer-users.json"
    env -i PATH="$PATH" HOME="$WORK" PYTHONUNBUFFERED=1 "$PYTHON" "$HERE/token_issuer.py" \
        --users "$WORK/issuer-users.json" --tls-cert "$WORK/tls/server.pem" --tls-key "$WORK/tls/server.key" \
        --signing-key "$WORK/tls/signing.key" --signing-cert "$WORK/tls/signing.pem" \
        --issuer "$ISSUER" --expires-in 3600 >"$WORK/issuer.stdout" 2>"$WORK/issuer.log" &
    PIDS+=($!)
    ISSUER_PID=$!
    ISSUER_URL=$(wait_for_line "$WORK/issuer.stdout" 'https://127.0.0.1:[0-9]*' "$ISSUER_PID") ||
        { cat "$WORK/issuer.log" >&2; die "the token issuer did not start"; }
    say "token issuer at $ISSUER_URL"
}

# docker-registry's configuration: filesystem storage with the in-memory blob descriptor
# cache (as in Debian's default config.yml), no access log. JSON strings are YAML scalars.
registry_config() { # STORAGE PORT
    cat <<EOF
version: 0.1
log:
  level: $REGISTRY_LOG_LEVEL
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $(jq -n --arg v "$1" '$v')
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$2
  secret: $(jq -n --arg v "$(openssl rand -hex 16)" '$v')
EOF
}

start_upstream() {
    local dir=$WORK/upstream port
    mkdir -p "$dir/storage"
    port=$(free_port)
    {
        registry_config "$dir/storage" "$port"
        cat <<EOF
  tls:
    certificate: $(jq -n --arg v "$WORK/tls/server.pem" '$v')
    key: $(jq -n --arg v "$WORK/tls/server.key" '$v')
auth:
  token:
    realm: $(jq -n --arg v "$ISSUER_URL/token" '$v')
    service: $SERVICE
    issuer: $ISSUER
    rootcertbundle: $(jq -n --arg v "$WORK/tls/signing.pem" '$v')
EOF
    } >"$dir/config.yml"
    # REGISTRY_* variables would override the file.
    env -i PATH="$PATH" HOME="$dir" "$REGISTRY" serve "$dir/config.yml" >"$dir/log" 2>&1 &
    PIDS+=($!)
    UPSTREAM_PID=$!
    UPSTREAM=127.0.0.1:$port
    UPSTREAM_URL=https://$UPSTREAM
    wait_for_http "$UPSTREAM_URL/v2/" "$UPSTREAM_PID" --cacert "$CA" ||
        { cat "$dir/log" >&2; die "the upstream registry did not start"; }
    say "upstream docker-registry at $UPSTREAM_URL (pid $UPSTREAM_PID)"
}

issuer_requests() { # token requests the issuer has answered so far
    grep -c -E '"(GET|POST) /token' "$WORK/issuer.log" || true
}

issuer_token() { # USER PASSWORD SCOPE — a bearer token from the issuer
    curl -fsS --cacert "$CA" -u "$1:$2" --get --data-urlencode "service=$SERVICE" \
        --data-urlencode "scope=$3" "$ISSUER_URL/token" | jq -er .token
}

declare -A MANIFEST LAYER LAYER_SIZE
push_images() {
    local layout=$WORK/layout name repo mib made token
    for name in big small; do
        if [[ $name == big ]]; then repo=$BIG_REPO mib=$LAYER_MIB; else repo=$SMALL_REPO mib=$SMALL_MIB; fi
        ((mib > 0)) || continue
        say "writing $repo:$TAG, one layer of $mib MiB of random data"
        made=$("$PYTHON" "$HERE/make_image.py" "$layout" "$name" "$mib")
        say "pushing $repo:$TAG to the upstream (skopeo, as $PUSHER)"
        env -i PATH="$PATH" HOME="$WORK/home" "$SKOPEO" --insecure-policy copy -q \
            --dest-cert-dir "$CERT_DIR" --dest-creds "$PUSHER:$PUSHER_PASSWORD" \
            "oci:$layout:$name" "docker://$UPSTREAM/$repo:$TAG" >&2
        # What the upstream serves, which is what every path is checked against.
        token=$(issuer_token "$PULLER" "$PULLER_PASSWORD" "repository:$repo:pull")
        curl -fsS --cacert "$CA" -H "Authorization: Bearer $token" -H "Accept: $ACCEPT" \
            -D "$WORK/$name.headers" -o "$WORK/$name.manifest" "$UPSTREAM_URL/v2/$repo/manifests/$TAG"
        MANIFEST[$name]=$(tr -d '\r' <"$WORK/$name.headers" | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
        LAYER[$name]=$(jq -r '.layers[0].digest' "$WORK/$name.manifest")
        LAYER_SIZE[$name]=$(jq -r '.layers[0].size' "$WORK/$name.manifest")
        [[ "${LAYER[$name]}" == "$(jq -r .layer <<<"$made")" ]] || die "the upstream holds another layer than the one written"
        say "  manifest ${MANIFEST[$name]}, layer ${LAYER[$name]} (${LAYER_SIZE[$name]} bytes)"
    done
    rm -rf "$layout" # the upstream has it; spare the disk
    # The direct path's bearer tokens, valid for the whole run (expires_in 3600).
    DIRECT_TOKEN_BIG=$(issuer_token "$PULLER" "$PULLER_PASSWORD" "repository:$BIG_REPO:pull")
    DIRECT_TOKEN_SMALL=$(issuer_token "$PULLER" "$PULLER_PASSWORD" "repository:$SMALL_REPO:pull")
}

# --- Proxies --------------------------------------------------------------------

# regkeeper: one data directory for the whole run (the admin and the upstream credential
# persist across restarts); each start gets a fresh proxy cache directory, or none.
RK_STARTS=0
RK_CREDENTIAL_ADDED=0
RK_PREFIX= # how curl and wrk name the upstream in the path: 127.0.0.1:PORT, else 127.0.0.1_PORT
start_regkeeper() { # nocache|cache
    local mode=$1 dir=$WORK/regkeeper port cache_env=() extra=()
    mkdir -p "$dir"
    RK_STARTS=$((RK_STARTS + 1))
    rm -rf "$dir"/cache-* # the previous start's cache; its figures are recorded
    RK_CACHE=
    if [[ $mode == cache ]]; then
        RK_CACHE=$dir/cache-$RK_STARTS
        mkdir -p "$RK_CACHE"
        cache_env=(REGKEEPER_PROXY_CACHE_DIR="$RK_CACHE" REGKEEPER_PROXY_CACHE_MAX_BYTES="$CACHE_MAX_BYTES")
    fi
    if [[ -n "$REGKEEPER_SERVE_ENV" ]]; then read -r -a extra <<<"$REGKEEPER_SERVE_ENV"; fi
    : >"$dir/stdout"
    env -i PATH="$PATH" HOME="$dir" \
        REGKEEPER_DATA_DIR="$dir/data" \
        REGKEEPER_BOOTSTRAP_TOKEN="$ADMIN_TOKEN" \
        REGKEEPER_OUTBOUND_ALLOW_NETWORKS=127.0.0.0/8 \
        REGKEEPER_OUTBOUND_CA_FILE="$CA" \
        "${cache_env[@]}" "${extra[@]}" \
        "$REGKEEPER" serve --listen 127.0.0.1:0 --proxy-listen 127.0.0.1:0 \
        >"$dir/stdout" 2>>"$dir/log" &
    PIDS+=($!)
    RK_PID=$!
    # The API's line; the proxy prints its own (`regkeeper proxy listening on …`).
    RK_API=$(wait_for_line "$dir/stdout" '^regkeeper listening on http://127.0.0.1:[0-9]*' "$RK_PID") || {
        tail -n 20 "$dir/log" >&2
        if grep -q 'not part of this build' "$dir/log"; then
            die "this regkeeper has no pull-through proxy yet (serve refuses --proxy-listen): leave regkeeper out of PATHS"
        fi
        die "regkeeper did not start"
    }
    RK_API=${RK_API#regkeeper listening on }
    # The proxy says where it listens before the API does (both bound to port 0, so no
    # other process can take the port between choosing and binding it).
    port=$(sed -n 's|^regkeeper proxy listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$dir/stdout")
    [[ -n "$port" ]] || die "regkeeper did not say where its proxy listens"
    RK_PROXY=127.0.0.1:$port
    wait_for_http "http://$RK_PROXY/v2/" "$RK_PID" || { tail -n 20 "$dir/log" >&2; die "regkeeper's proxy listener did not answer"; }
    say "regkeeper ($mode) at $RK_API, proxy at $RK_PROXY (pid $RK_PID)${RK_CACHE:+, cache $RK_CACHE}"
    if ((!RK_CREDENTIAL_ADDED)); then
        # Stored through the CLI like a user would; the server verifies it against the
        # upstream (token dance included) before storing it.
        printf '%s' "$PULLER_PASSWORD" | env -i PATH="$PATH" HOME="$dir" REGKEEPER_URL="$RK_API" REGKEEPER_TOKEN="$ADMIN_TOKEN" \
            "$REGKEEPER" credentials add --name upstream --registry "$UPSTREAM" --username "$PULLER" --password-stdin >&2 ||
            { tail -n 20 "$dir/log" >&2; die "regkeeper credentials add failed"; }
        RK_CREDENTIAL_ADDED=1
    fi
    if [[ -z "$RK_PREFIX" ]]; then
        local form code
        for form in "$UPSTREAM" "${UPSTREAM/:/_}"; do
            code=$(curl -s -o /dev/null -w '%{http_code}' -u "any:$ADMIN_TOKEN" -H "Accept: $ACCEPT" \
                "http://$RK_PROXY/v2/$form/$BIG_REPO/manifests/$TAG" || true)
            say "  GET /v2/$form/$BIG_REPO/manifests/$TAG through regkeeper: $code"
            [[ "$code" == 200 ]] && { RK_PREFIX=$form; break; }
        done
        [[ -n "$RK_PREFIX" ]] || { tail -n 20 "$dir/log" >&2; die "regkeeper's proxy does not serve the upstream's manifest"; }
    fi
}

# distribution as a pull-through cache: plain HTTP, anonymous clients, the upstream's
# credentials in its proxy section, and a fresh storage directory at every start. Go
# reads the CA it must trust for the upstream from SSL_CERT_FILE.
DIST_STARTS=0
start_distribution() {
    local dir=$WORK/distribution port
    mkdir -p "$dir"
    DIST_STARTS=$((DIST_STARTS + 1))
    rm -rf "$dir"/storage-*
    DIST_STORAGE=$dir/storage-$DIST_STARTS
    mkdir -p "$DIST_STORAGE"
    port=$(free_port)
    {
        registry_config "$DIST_STORAGE" "$port"
        cat <<EOF
proxy:
  remoteurl: $UPSTREAM_URL
  username: $PULLER
  password: $PULLER_PASSWORD
EOF
    } >"$dir/config.yml"
    env -i PATH="$PATH" HOME="$dir" SSL_CERT_FILE="$CA" "$REGISTRY" serve "$dir/config.yml" >>"$dir/log" 2>&1 &
    PIDS+=($!)
    DIST_PID=$!
    DIST=127.0.0.1:$port
    wait_for_http "http://$DIST/v2/" "$DIST_PID" || { tail -n 20 "$dir/log" >&2; die "the distribution proxy did not start"; }
    say "distribution proxy at http://$DIST (pid $DIST_PID), storage $DIST_STORAGE"
}

# --- Pulls ------------------------------------------------------------------------

# What each path needs: the proxy's pid, and the blob URL, curl's auth and skopeo's
# source options for an image.
blob_url() { # PATH NAME
    local repo=$BIG_REPO
    [[ $2 == small ]] && repo=$SMALL_REPO
    case $1 in
    direct) echo "$UPSTREAM_URL/v2/$repo/blobs/${LAYER[$2]}" ;;
    regkeeper*) echo "http://$RK_PROXY/v2/$RK_PREFIX/$repo/blobs/${LAYER[$2]}" ;;
    distribution) echo "http://$DIST/v2/$repo/blobs/${LAYER[$2]}" ;;
    esac
}
curl_auth() { # PATH NAME
    case $1 in
    direct)
        local token=$DIRECT_TOKEN_BIG
        [[ $2 == small ]] && token=$DIRECT_TOKEN_SMALL
        printf '%s\n' --cacert "$CA" -H "Authorization: Bearer $token"
        ;;
    regkeeper*) printf '%s\n' -u "any:$ADMIN_TOKEN" ;;
    distribution) ;;
    esac
}
skopeo_source() { # PATH — options, then the image reference
    case $1 in
    direct) printf '%s\n' --src-cert-dir "$CERT_DIR" --src-creds "$PULLER:$PULLER_PASSWORD" "docker://$UPSTREAM/$BIG_REPO:$TAG" ;;
    # An image reference cannot hold host:port in a repository path, hence HOST_PORT.
    regkeeper*) printf '%s\n' --src-tls-verify=false --src-creds "any:$ADMIN_TOKEN" "docker://$RK_PROXY/${UPSTREAM/:/_}/$BIG_REPO:$TAG" ;;
    distribution) printf '%s\n' --src-tls-verify=false --src-no-creds "docker://$DIST/$BIG_REPO:$TAG" ;;
    esac
}
proxy_pid() { # PATH
    case $1 in
    direct) echo "" ;;
    regkeeper*) echo "$RK_PID" ;;
    distribution) echo "$DIST_PID" ;;
    esac
}

# After a cold pull, waits until the proxy holds the blob, so the warm pull finds it
# and no background fill competes with the next measurement. distribution 2.8 fetches a
# missed blob twice: once for the client, once in a goroutine that stores it.
wait_for_fill() { # PATH NAME
    local hex=${LAYER[$2]#sha256:} size=${LAYER_SIZE[$2]} data have
    case $1 in
    distribution)
        data=$DIST_STORAGE/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
        for _ in $(seq 1 1200); do
            [[ -f "$data" ]] && (($(stat -c %s "$data") == size)) && return 0
            sleep 0.05
        done
        say "  warning: distribution has not stored $2's layer after 60 s"
        ;;
    regkeeper-cache)
        # The cache's layout (crates/server/src/proxy/blob_cache.rs) is
        # blobs/sha256/XX/HEX, written under tmp/ and renamed; should it change, any
        # committed files adding up to the blob's size will do.
        data=$RK_CACHE/blobs/sha256/${hex:0:2}/$hex
        for _ in $(seq 1 1200); do
            [[ -f "$data" ]] && (($(stat -c %s "$data") == size)) && return 0
            have=$(du -sb --exclude=tmp "$RK_CACHE" | cut -f1)
            ((have >= size)) && return 0
            sleep 0.05
        done
        say "  warning: regkeeper's cache holds $(du -sb "$RK_CACHE" | cut -f1) bytes after 60 s, not $size"
        ;;
    esac
}

pull() { # ROUND PATH CLIENT NAME PHASE — one timed pull; appends a JSON line to pulls.jsonl
    local round=$1 path=$2 client=$3 name=$4 phase=$5 pid upstream_before proxy_before start end
    local bytes seconds ttfb out code auth=() source=() dest issuer_before upstream_written_before
    pid=$(proxy_pid "$path")
    if [[ -n "$pid" ]]; then reset_peak_rss "$pid"; fi
    upstream_before=$(cpu_ticks "$UPSTREAM_PID")
    proxy_before=$(if [[ -n "$pid" ]]; then cpu_ticks "$pid"; else echo 0; fi)
    issuer_before=$(issuer_requests)
    upstream_written_before=$(written_bytes "$UPSTREAM_PID")
    case $client in
    curl)
        mapfile -t auth < <(curl_auth "$path" "$name")
        # HTTP/1.1 everywhere: the proxies serve plain HTTP/1.1, and over HTTPS curl would
        # negotiate HTTP/2 with the upstream, which moves a large blob about a third slower.
        out=$(curl -sS --http1.1 -o /dev/null -w '%{http_code} %{size_download} %{time_total} %{time_starttransfer}' \
            "${auth[@]}" "$(blob_url "$path" "$name")") || die "$path: curl failed: $out"
        read -r code bytes seconds ttfb <<<"$out"
        [[ "$code" == 200 && "$bytes" == "${LAYER_SIZE[$name]}" ]] ||
            die "$path: curl got HTTP $code and $bytes bytes, not 200 and ${LAYER_SIZE[$name]}"
        ;;
    skopeo)
        mapfile -t source < <(skopeo_source "$path")
        dest=$WORK/skopeo-dest
        rm -rf "$dest"
        start=$(date +%s%N)
        env -i PATH="$PATH" HOME="$WORK/home" "$SKOPEO" --insecure-policy copy -q "${source[@]}" "dir:$dest" \
            >"$WORK/skopeo.out" 2>&1 ||
            { cat "$WORK/skopeo.out" >&2; die "$path: skopeo copy failed"; }
        end=$(date +%s%N)
        seconds=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.6f", ns / 1e9 }')
        ttfb=null
        local layer_file=$dest/${LAYER[$name]#sha256:}
        [[ -f "$layer_file" && $(stat -c %s "$layer_file") == "${LAYER_SIZE[$name]}" ]] ||
            die "$path: skopeo did not copy the layer: $(ls -l "$dest")"
        bytes=$(find "$dest" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')
        ;;
    esac
    local upstream_after proxy_after peak=null rss=null
    upstream_after=$(cpu_ticks "$UPSTREAM_PID")
    if [[ -n "$pid" ]]; then
        proxy_after=$(cpu_ticks "$pid")
        peak=$(peak_rss_kib "$pid")
        rss=$(rss_kib "$pid")
    else
        proxy_after=0
    fi
    # Cache fills and other background work end before the next pull starts.
    if [[ $phase == cold ]]; then wait_for_fill "$path" "$name"; fi
    local cache_bytes=null proxy_settled issuer_after upstream_written
    case $path in
    regkeeper-cache) cache_bytes=$(du -sb "$RK_CACHE" | cut -f1) ;;
    distribution) cache_bytes=$(du -sb "$DIST_STORAGE" | cut -f1) ;;
    esac
    settle "$UPSTREAM_PID" ${pid:+"$pid"}
    proxy_settled=$(if [[ -n "$pid" ]]; then cpu_ticks "$pid"; else echo 0; fi)
    issuer_after=$(issuer_requests)
    upstream_written=$(($(written_bytes "$UPSTREAM_PID") - upstream_written_before))
    rm -rf "$WORK/skopeo-dest"
    sync -f "$WORK"
    jq -cn --argjson round "$round" --arg path "$path" --arg client "$client" --arg layer "$name" --arg phase "$phase" \
        --argjson bytes "$bytes" --argjson seconds "$seconds" --argjson ttfb "$ttfb" \
        --argjson proxy_cpu "$((proxy_after - proxy_before))" --argjson proxy_cpu_after "$((proxy_settled - proxy_after))" \
        --argjson upstream_cpu "$((upstream_after - upstream_before))" --argjson hz "$HZ" \
        --argjson peak "$peak" --argjson rss "$rss" --argjson cache_bytes "$cache_bytes" \
        --arg load "$(cut -d' ' -f1 /proc/loadavg)" --argjson tokens "$((issuer_after - issuer_before))" \
        --argjson upstream_written "$upstream_written" \
        '{round: $round, path: $path, client: $client, layer: $layer, phase: $phase, bytes: $bytes,
          seconds: $seconds, time_to_first_byte_s: $ttfb, mib_per_s: ($bytes / 1048576 / $seconds),
          proxy_cpu_s: ($proxy_cpu / $hz), proxy_cpu_after_response_s: ($proxy_cpu_after / $hz),
          upstream_cpu_s: ($upstream_cpu / $hz), proxy_peak_rss_kib: $peak, proxy_rss_after_kib: $rss,
          proxy_storage_bytes: $cache_bytes, token_requests: $tokens, upstream_bytes_written: $upstream_written,
          load1: ($load | tonumber)}' |
        tee -a "$WORK/pulls.jsonl" |
        jq -r '"  \(.path) \(.client) \(.layer) \(.phase): \(.mib_per_s * 10 | round / 10) MiB/s (\(.seconds * 1000 | round) ms)"
               + (if .proxy_peak_rss_kib then ", proxy peak RSS \(.proxy_peak_rss_kib / 1024 | round) MiB" else "" end)' >&2
}

pull_round() { # ROUND
    local round=$1 client
    # The direct path has no cache, so its one pull is both paths' baseline.
    if has "$PATHS" direct; then
        for client in $CLIENTS; do
            if [[ $client == curl ]] && ((SMALL_MIB > 0)); then pull "$round" direct curl small direct; fi
            pull "$round" direct "$client" big direct
        done
    fi
    if has "$PATHS" regkeeper; then
        # No cache: every pull is a cold one.
        start_regkeeper nocache
        for client in $CLIENTS; do
            if [[ $client == curl ]] && ((SMALL_MIB > 0)); then pull "$round" regkeeper-nocache curl small cold; fi
            pull "$round" regkeeper-nocache "$client" big cold
        done
        stop "$RK_PID"
        # An empty cache for each client: cold fills it, warm reads it.
        for client in $CLIENTS; do
            start_regkeeper cache
            if [[ $client == curl ]] && ((SMALL_MIB > 0)); then
                pull "$round" regkeeper-cache curl small cold
                pull "$round" regkeeper-cache curl small warm
            fi
            pull "$round" regkeeper-cache "$client" big cold
            pull "$round" regkeeper-cache "$client" big warm
            stop "$RK_PID"
        done
    fi
    if has "$PATHS" distribution; then
        for client in $CLIENTS; do
            start_distribution
            if [[ $client == curl ]] && ((SMALL_MIB > 0)); then
                pull "$round" distribution curl small cold
                pull "$round" distribution curl small warm
            fi
            pull "$round" distribution "$client" big cold
            pull "$round" distribution "$client" big warm
            stop "$DIST_PID"
        done
    fi
}

# --- Manifest request rate --------------------------------------------------------

manifest_target() { # PATH BY — prints the URL, then the Authorization header value
    local reference=$TAG
    [[ $2 == digest ]] && reference=${MANIFEST[big]}
    case $1 in
    direct) printf '%s\n' "$UPSTREAM_URL/v2/$BIG_REPO/manifests/$reference" "Bearer $DIRECT_TOKEN_BIG" ;;
    regkeeper*) printf '%s\n' "http://$RK_PROXY/v2/$RK_PREFIX/$BIG_REPO/manifests/$reference" \
        "Basic $(printf 'any:%s' "$ADMIN_TOKEN" | base64 -w0)" ;;
    distribution) printf '%s\n' "http://$DIST/v2/$BIG_REPO/manifests/$reference" "" ;;
    esac
}

manifest_run() { # ROUND PATH BY — checks one GET, then one wrk run; appends to manifests.jsonl
    local round=$1 path=$2 by=$3 target url authorization pid digest
    mapfile -t target < <(manifest_target "$path" "$by")
    url=${target[0]} authorization=${target[1]:-}
    pid=$(proxy_pid "$path")
    # The same answer as the upstream's, and the proxy's caches warm.
    digest=$(curl -fsS -o /dev/null -D - --cacert "$CA" -H "Accept: $ACCEPT" \
        ${authorization:+-H "Authorization: $authorization"} "$url" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }') ||
        die "$path: GET $url failed"
    [[ "$digest" == "${MANIFEST[big]}" ]] || die "$path: the manifest's digest is $digest, not ${MANIFEST[big]}"
    local upstream_before proxy_before=0 load issuer_before
    if [[ -n "$pid" ]]; then
        reset_peak_rss "$pid"
        proxy_before=$(cpu_ticks "$pid")
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    upstream_before=$(cpu_ticks "$UPSTREAM_PID")
    issuer_before=$(issuer_requests)
    : >"$WORK/wrk.out"
    BENCH_AUTHORIZATION=$authorization BENCH_ACCEPT=$ACCEPT BENCH_OUT="$WORK/wrk.out" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s "$HERE/wrk.lua" "$url" >"$WORK/wrk.stdout"
    local upstream_after proxy_after=0 peak=null
    upstream_after=$(cpu_ticks "$UPSTREAM_PID")
    if [[ -n "$pid" ]]; then
        proxy_after=$(cpu_ticks "$pid")
        peak=$(peak_rss_kib "$pid")
    fi
    jq -c --argjson round "$round" --arg path "$path" --arg by "$by" --argjson hz "$HZ" \
        --argjson proxy_cpu "$((proxy_after - proxy_before))" --argjson upstream_cpu "$((upstream_after - upstream_before))" \
        --argjson peak "$peak" --arg load "$load" --argjson tokens "$(($(issuer_requests) - issuer_before))" \
        '. + {round: $round, path: $path, by: $by, proxy_cpu_s: ($proxy_cpu / $hz), upstream_cpu_s: ($upstream_cpu / $hz),
              proxy_peak_rss_kib: $peak, token_requests: $tokens, load1: ($load | tonumber)}' "$WORK/wrk.out" |
        tee -a "$WORK/manifests.jsonl" |
        jq -r '"  \(.path) manifest by \(.by): \(.rps | round) req/s, p50 \(.p50_us) µs, p99 \(.p99_us) µs, failed \(.non_2xx_3xx + .socket_errors)"' >&2
    settle "$UPSTREAM_PID" ${pid:+"$pid"}
}

manifest_round() { # ROUND
    local round=$1 by
    if has "$PATHS" direct; then
        for by in tag digest; do manifest_run "$round" direct "$by"; done
    fi
    if has "$PATHS" regkeeper; then
        start_regkeeper nocache
        for by in tag digest; do manifest_run "$round" regkeeper-nocache "$by"; done
        stop "$RK_PID"
        start_regkeeper cache
        for by in tag digest; do manifest_run "$round" regkeeper-cache "$by"; done
        stop "$RK_PID"
    fi
    if has "$PATHS" distribution; then
        start_distribution
        for by in tag digest; do manifest_run "$round" distribution "$by"; done
        stop "$DIST_PID"
    fi
}

# --- Run ------------------------------------------------------------------------

say "load before set-up: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$WORK/home"
make_certificates
start_issuer
start_upstream
push_images
touch "$WORK/pulls.jsonl" "$WORK/manifests.jsonl"

for round in $(seq 1 "$ROUNDS"); do
    say "round $round/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    if has "$PARTS" pull; then pull_round "$round"; fi
    if has "$PARTS" manifest; then manifest_round "$round"; fi
done

ISSUER_REQUESTS=$(issuer_requests)
mkdir -p "$(dirname "$RESULTS")"
BENCH_ROOT=$ROOT BENCH_ROUNDS=$ROUNDS BENCH_PATHS=$PATHS BENCH_PARTS=$PARTS BENCH_CLIENTS=$CLIENTS \
    BENCH_LAYER_MIB=$LAYER_MIB BENCH_SMALL_MIB=$SMALL_MIB BENCH_DURATION=$DURATION \
    BENCH_CONNECTIONS=$CONNECTIONS BENCH_THREADS=$THREADS BENCH_CACHE_MAX_BYTES=$CACHE_MAX_BYTES \
    BENCH_REGISTRY_LOG_LEVEL=$REGISTRY_LOG_LEVEL BENCH_REGKEEPER=$REGKEEPER BENCH_PYTHON=$PYTHON \
    BENCH_LAYER_BYTES=${LAYER_SIZE[big]} BENCH_SMALL_BYTES=${LAYER_SIZE[small]:-0} \
    BENCH_ISSUER_REQUESTS=$ISSUER_REQUESTS BENCH_REGKEEPER_PREFIX=$RK_PREFIX \
    python3 "$HERE/report.py" "$WORK" "$RESULTS"

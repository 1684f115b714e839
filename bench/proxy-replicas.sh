#!/usr/bin/env bash
# Pull-through caches for three replicas (issue 17 part 1): one layer of random data
# pulled with curl through three replicas of each of
#   - regkeeper, sharing one blob cache on S3 (REGKEEPER_PROXY_CACHE_S3_URL) and one
#     PostgreSQL database;
#   - regkeeper, each replica with its own local-disk cache (REGKEEPER_PROXY_CACHE_DIR);
#   - distribution (Debian's docker-registry) as a pull-through cache (`proxy:
#     remoteurl`) with its S3 storage driver on the same moto_server, the three sharing
#     one bucket (redirects off, so the bytes come through the registry as they do
#     through regkeeper).
# For each: how many times the upstream served the layer (its access log) for the first
# pull through every replica, and the warm pull throughput once all three hold it
# (ROUNDS rounds through each replica in turn). See "Pull-through caches for three
# replicas" in bench/README.md.
#
#   bench/proxy-replicas.sh [ROUNDS]     # default 3
#
# Environment:
#   LAYER_MIB    the layer in MiB (default 256; QUICK=1 bench/run uses 64)
#   PATHS        "s3 disk distribution" (default), or some of them
#   DATABASE_ADMIN_URL  a PostgreSQL it may create a database in
#                (default postgres://postgres@127.0.0.1:5432/postgres)
#   MOTO_SERVER  moto_server to run (default .venv-test/bin/moto_server)
#   RESULTS      JSON results file (default target/bench/proxy-replicas.json)
#   KEEP_WORK    set to keep the temporary directory
#   BUILD=0      use target/release/regkeeper as it is
#   REGKEEPER_BIN  another regkeeper binary
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${1:-3}
LAYER_MIB=${LAYER_MIB:-256}
PATHS=${PATHS:-s3 disk distribution}
DATABASE_ADMIN_URL=${DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
MOTO_SERVER=${MOTO_SERVER:-$ROOT/.venv-test/bin/moto_server}
RESULTS=${RESULTS:-$ROOT/target/bench/proxy-replicas.json}
export CARGO_TARGET_DIR="$ROOT/target"
REGKEEPER=${REGKEEPER_BIN:-$CARGO_TARGET_DIR/release/regkeeper}
REGISTRY=/usr/bin/docker-registry
ADMIN_TOKEN=rk_bench_replicas_admin_token_0123456789abcdef
REPO=bench/big
ACCESS_KEY=AKIAIOSFODNN7EXAMPLE
SECRET_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf '==> error: %s\n' "$*" >&2
    exit 1
}
has() { [[ " $1 " == *" $2 "* ]]; }

for tool in "$REGISTRY" curl jq psql python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install docker-registry curl jq postgresql-client)"
done
[[ -x "$MOTO_SERVER" ]] || die "no $MOTO_SERVER (scripts/test installs moto[server] into .venv-test)"
if [[ "${BUILD:-1}" != 0 && -z "${REGKEEPER_BIN:-}" ]]; then
    say "building regkeeper (release)"
    cargo build --release -p regkeeper >&2
fi
[[ -x "$REGKEEPER" ]] || die "no $REGKEEPER"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-replicas.XXXXXX")
PIDS=()
DATABASE=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -n "$DATABASE" ]] && psql -q "$DATABASE_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1
    if [[ -n "${KEEP_WORK:-}" ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_http() { # URL PID
    for _ in $(seq 1 600); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "$1" || true)" != 000 ]] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# --- moto (S3) and the upstream -----------------------------------------------------

MOTO_PORT=$(free_port)
env -i PATH="$PATH" HOME="$WORK" "$MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
MOTO=http://127.0.0.1:$MOTO_PORT
wait_for_http "$MOTO/moto-api/" "${PIDS[-1]}" || die "moto_server did not start: $(tail -5 "$WORK/moto.log")"
s3_auth="AWS4-HMAC-SHA256 Credential=$ACCESS_KEY/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
for bucket in bench-regkeeper bench-distribution; do
    curl -sf -X PUT -H "Authorization: $s3_auth" "$MOTO/$bucket" >/dev/null || die "creating bucket $bucket"
done
say "moto_server at $MOTO"

registry_config() { # PORT STORAGE-YAML [EXTRA-YAML]
    cat <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
$2
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$1
  secret: bench-secret-$1
${3:-}
EOF
}

UPSTREAM_PORT=$(free_port)
mkdir -p "$WORK/upstream"
registry_config "$UPSTREAM_PORT" "  filesystem:
    rootdirectory: $WORK/upstream" >"$WORK/upstream.yml"
env -i PATH="$PATH" HOME="$WORK" "$REGISTRY" serve "$WORK/upstream.yml" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
UPSTREAM=127.0.0.1:$UPSTREAM_PORT
wait_for_http "http://$UPSTREAM/v2/" "${PIDS[-1]}" || die "the upstream did not start"

say "writing and pushing a ${LAYER_MIB} MiB layer of random data"
head -c $((LAYER_MIB * 1024 * 1024)) /dev/urandom >"$WORK/layer"
DIGEST=sha256:$(sha256sum "$WORK/layer" | cut -d' ' -f1)
location=$(curl -sf -X POST -D - -o /dev/null "http://$UPSTREAM/v2/$REPO/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
[[ $location == http* ]] || location="http://$UPSTREAM$location"
[[ $location == *\?* ]] && separator='&' || separator='?'
curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$WORK/layer" \
    "$location${separator}digest=$DIGEST" >/dev/null || die "pushing the layer"

upstream_fetches() { # how often the upstream served the layer whole
    grep 'response completed' "$WORK/upstream.log" | grep 'http.request.method=GET' |
        grep "/blobs/$DIGEST" | grep -c 'http.response.status=200' || true
}

# --- The three set-ups -----------------------------------------------------------------

DATABASE=bench_replicas_$$
psql -q "$DATABASE_ADMIN_URL" -c "CREATE DATABASE $DATABASE" >/dev/null || die "creating database $DATABASE"
DATABASE_URL=${DATABASE_ADMIN_URL%/*}/$DATABASE
KEY_FILE=$WORK/master.key

# start_regkeeper NAME EXTRA-ENV... — one replica; sets URL_OUT and PROXY_OUT
start_regkeeper() {
    local name=$1 log=$WORK/$1.log out=$WORK/$1.stdout
    shift
    env -i PATH="$PATH" HOME="$WORK" REGKEEPER_DATA_DIR="$WORK/$name-data" \
        REGKEEPER_BOOTSTRAP_TOKEN=$ADMIN_TOKEN REGKEEPER_MASTER_KEY_FILE="$KEY_FILE" \
        REGKEEPER_DATABASE_URL="$DATABASE_URL" REGKEEPER_PROXY_LISTEN=127.0.0.1:0 \
        REGKEEPER_OUTBOUND_ALLOW_NETWORKS=127.0.0.0/8 REGKEEPER_OUTBOUND_HTTP_REGISTRIES="$UPSTREAM" \
        REGKEEPER_PROXY_CACHE_MAX_BYTES=4GiB REGKEEPER_LOG=warn "$@" \
        "$REGKEEPER" serve --listen 127.0.0.1:0 >"$out" 2>"$log" &
    PIDS+=($!)
    local pid=$!
    for _ in $(seq 1 600); do
        grep -q '^regkeeper listening on' "$out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || die "$name did not start: $(tail -5 "$log")"
        sleep 0.05
    done
    URL_OUT=$(sed -n 's/^regkeeper listening on //p' "$out")
    PROXY_OUT=$(sed -n 's/^regkeeper proxy listening on //p' "$out")
}

# start_distribution NAME — one pull-through replica on the shared bucket; sets PROXY_OUT
start_distribution() {
    local port
    port=$(free_port)
    registry_config "$port" "  s3:
    accesskey: $ACCESS_KEY
    secretkey: $SECRET_KEY
    region: us-east-1
    regionendpoint: $MOTO
    bucket: bench-distribution
    secure: false
    v4auth: true
  redirect:
    disable: true" "proxy:
  remoteurl: http://$UPSTREAM" >"$WORK/$1.yml"
    env -i PATH="$PATH" HOME="$WORK" "$REGISTRY" serve "$WORK/$1.yml" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
    wait_for_http "http://127.0.0.1:$port/v2/" "${PIDS[-1]}" || die "$1 did not start"
    PROXY_OUT=http://127.0.0.1:$port
}

# pull URL [CURL ARGS] — prints "BYTES SECONDS"
pull() {
    local url=$1
    shift
    curl -sf -o /dev/null -w '%{size_download} %{time_total}\n' "$@" "$url" || echo "0 0"
}

declare -A FETCHES WARM
run_path() { # PATH
    local path=$1 proxies=() auth=() prefix name i url
    local fetched_before bytes=0 seconds=0 line
    fetched_before=$(upstream_fetches)
    case $path in
    s3 | disk)
        for i in 1 2 3; do
            name=$path-$i
            if [[ $path == s3 ]]; then
                start_regkeeper "$name" REGKEEPER_PROXY_CACHE_S3_URL=s3://bench-regkeeper/cache \
                    AWS_ENDPOINT_URL_S3="$MOTO" AWS_ACCESS_KEY_ID=$ACCESS_KEY \
                    AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=us-east-1
            else
                start_regkeeper "$name" REGKEEPER_PROXY_CACHE_DIR="$WORK/$name-cache"
            fi
            proxies+=("$PROXY_OUT")
            # One database for every replica: the credential is added once.
            if [[ -z "${CREDENTIAL_ADDED:-}" ]]; then
                env -i PATH="$PATH" HOME="$WORK" REGKEEPER_URL="$URL_OUT" REGKEEPER_TOKEN=$ADMIN_TOKEN \
                    UPSTREAM_PASSWORD=anything "$REGKEEPER" credentials add --name upstream \
                    --registry "$UPSTREAM" --username bench --password-env UPSTREAM_PASSWORD \
                    >/dev/null 2>"$WORK/credential.log" || true
                CREDENTIAL_ADDED=1
            fi
        done
        auth=(-u "bench:$ADMIN_TOKEN")
        prefix=${UPSTREAM/:/_}/
        ;;
    distribution)
        for i in 1 2 3; do
            start_distribution "distribution-$i"
            proxies+=("$PROXY_OUT")
        done
        prefix=""
        ;;
    esac
    # Cold: the first pull through each replica, in turn.
    for url in "${proxies[@]}"; do
        line=$(pull "$url/v2/$prefix$REPO/blobs/$DIGEST" "${auth[@]}")
        [[ ${line%% *} == $((LAYER_MIB * 1024 * 1024)) ]] || die "$path: a cold pull through $url failed"
    done
    sleep 1
    FETCHES[$path]=$(($(upstream_fetches) - fetched_before))
    # Warm: every replica holds it (or reads it from the shared store).
    for _ in $(seq 1 "$ROUNDS"); do
        for url in "${proxies[@]}"; do
            line=$(pull "$url/v2/$prefix$REPO/blobs/$DIGEST" "${auth[@]}")
            bytes=$((bytes + ${line%% *}))
            seconds=$(python3 -c "print($seconds + ${line#* })")
        done
    done
    WARM[$path]=$(python3 -c "print(round($bytes / 1048576 / $seconds, 1) if $seconds else 0)")
    say "$path: upstream fetched the layer ${FETCHES[$path]} time(s) for 3 replicas; warm ${WARM[$path]} MiB/s"
}

for path in s3 disk distribution; do
    has "$PATHS" "$path" && run_path "$path"
done

# --- Results ---------------------------------------------------------------------------

mkdir -p "$(dirname "$RESULTS")"
python3 - "$RESULTS" "$LAYER_MIB" "$ROUNDS" \
    "${FETCHES[s3]:-}" "${WARM[s3]:-}" "${FETCHES[disk]:-}" "${WARM[disk]:-}" \
    "${FETCHES[distribution]:-}" "${WARM[distribution]:-}" <<'EOF'
import json, sys
results, layer, rounds, s3_f, s3_w, disk_f, disk_w, dist_f, dist_w = sys.argv[1:]
num = lambda text: float(text) if text else None
s3_f, s3_w, disk_f, disk_w, dist_f, dist_w = map(num, (s3_f, s3_w, disk_f, disk_w, dist_f, dist_w))
rows = []
def row(measurement, ours, peer_name, peer, unit, target=None, met=None, lower_better=False):
    if ours is None or peer is None:
        return
    ratio = ours / peer if peer else None
    rows.append({
        "measurement": measurement,
        "regkeeper": f"{ours:,.1f} {unit}" if unit == "MiB/s" else f"{ours:.0f} {unit}",
        "peer": f"{peer_name}: " + (f"{peer:,.1f} {unit}" if unit == "MiB/s" else f"{peer:.0f} {unit}"),
        "ratio": round(ratio, 2) if ratio is not None else None,
        "target": target or "—",
        "met": met,
    })
row(f"upstream fetches of one {layer} MiB layer, first pull through each of 3 replicas: shared S3 cache vs distribution pull-through on S3",
    s3_f, "distribution", dist_f, "fetch(es)", "1 fetch for 3 replicas", None if s3_f is None else s3_f == 1)
row("upstream fetches, 3 replicas: shared S3 cache vs a local-disk cache per replica",
    s3_f, "local disk", disk_f, "fetch(es)")
row(f"warm curl pull of a {layer} MiB layer, 3 replicas: shared S3 cache vs distribution pull-through on S3",
    s3_w, "distribution", dist_w, "MiB/s", "≥ 1.0x", None if not (s3_w and dist_w) else s3_w >= dist_w)
row("warm curl pull, 3 replicas: shared S3 cache vs a local-disk cache per replica",
    s3_w, "local disk", disk_w, "MiB/s")
out = {
    "meta": {"layer_mib": int(layer), "rounds": int(rounds), "store": "moto_server S3 on 127.0.0.1"},
    "summary": {"upstream_fetches": {"s3": s3_f, "disk": disk_f, "distribution": dist_f},
                "warm_mib_per_s": {"s3": s3_w, "disk": disk_w, "distribution": dist_w}},
    "rows": rows,
}
json.dump(out, open(results, "w"), indent=2)
print("| measurement | regkeeper | peer | ratio | target | met |")
print("|---|---:|---:|---:|---|---|")
for r in rows:
    met = "—" if r["met"] is None else ("met" if r["met"] else "missed")
    print(f"| {r['measurement']} | {r['regkeeper']} | {r['peer']} | {r['ratio']}x | {r['target']} | {met} |")
EOF

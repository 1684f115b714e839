#!/usr/bin/env bash
# Three `regkeeper serve` replicas on one throwaway PostgreSQL database, one seeded
# docker credential, and 10,000 concurrent resolves spread round-robin over the three
# (bench/replicas-load/load.py). Reports p50/p90/p99 latency, throughput and errors
# (which must be 0), and writes them as JSON. See "Replicas under load" in
# bench/README.md. Not run in CI.
#
#   bench/replicas-load.sh
#
# Environment:
#   REQUESTS      resolves to send (default 10000)
#   CONCURRENCY   how many in flight at once (default: all of them)
#   REPLICAS      replicas to start (default 3)
#   POSTGRES_URL  an administrative URL to create and drop the database with (default
#                 $REGKEEPER_TEST_POSTGRES_URL, else postgres://postgres@127.0.0.1:5432/postgres)
#   RESULTS       JSON results file (default target/bench/replicas-load.json)
#   BUILD=0       use target/release/regkeeper as it is instead of building it
#   REGKEEPER_BIN another regkeeper binary to run (not built)
#   KEEP_WORK     set to keep the temporary directory (replica logs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REQUESTS=${REQUESTS:-10000}
CONCURRENCY=${CONCURRENCY:-0}
REPLICAS=${REPLICAS:-3}
POSTGRES_URL=${POSTGRES_URL:-${REGKEEPER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
RESULTS=${RESULTS:-$ROOT/target/bench/replicas-load.json}
export CARGO_TARGET_DIR="$ROOT/target"
REGKEEPER=${REGKEEPER_BIN:-$CARGO_TARGET_DIR/release/regkeeper}
TOKEN=rk_bench_replicas_load_token_0123456789
SECRET=replicas-load-secret
IMAGE=load.bench.test/team/app:1

if [[ -z "${REGKEEPER_BIN:-}" && "${BUILD:-1}" != 0 ]]; then
    cargo build --release -p regkeeper --bin regkeeper
fi
# Every request is a connection of its own: the client holds REQUESTS sockets and each
# replica a third of them.
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < REQUESTS + 1024)); then
    echo "ulimit -n is $(ulimit -n); raise the hard limit above $((REQUESTS + 1024)) or lower REQUESTS" >&2
    exit 1
fi

DATABASE="regkeeper_load_$(date +%s)_$$"
DATABASE_URL="${POSTGRES_URL%/*}/$DATABASE"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    psql "$POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null || true
    if [[ -n "${KEEP_WORK:-}" ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
psql "$POSTGRES_URL" -qc "CREATE DATABASE $DATABASE" >/dev/null

# Starts replica $1 in the background (its pid into PIDS, so cleanup stops it) and
# appends its URL to URLS once it says it is listening. Not run in a subshell: a pid
# recorded there would never reach cleanup. The first replica creates the master key
# file; the others share it. Every request comes from 127.0.0.1, so the per-address
# connection bound (a defence against one client holding every connection) is off.
URLS=()
start_replica() {
    local n=$1 out="$WORK/replica-$1.out"
    REGKEEPER_DATA_DIR="$WORK/replica-$n" \
        REGKEEPER_MASTER_KEY_FILE="$WORK/master.key" \
        REGKEEPER_DATABASE_URL="$DATABASE_URL" \
        REGKEEPER_BOOTSTRAP_TOKEN="$TOKEN" \
        REGKEEPER_LOG=warn \
        REGKEEPER_MAX_CONNECTIONS_PER_ADDRESS=0 \
        REGKEEPER_MAX_CONNECTIONS=16384 \
        "$REGKEEPER" serve --listen 127.0.0.1:0 >"$out" 2>"$WORK/replica-$n.log" &
    PIDS+=($!)
    for _ in $(seq 300); do
        if grep -q '^regkeeper listening on ' "$out"; then
            URLS+=("$(sed -n 's/^regkeeper listening on //p' "$out")")
            return
        fi
        sleep 0.1
    done
    echo "replica $n did not start:" >&2
    cat "$WORK/replica-$n.log" >&2
    exit 1
}

for n in $(seq "$REPLICAS"); do
    start_replica "$n"
done
echo "replicas: ${URLS[*]} on database $DATABASE" >&2

curl -sfS -X POST "${URLS[0]}/api/v1/workspaces/%7Eadmin/credentials" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"name\":\"load\",\"registry\":\"load.bench.test\",\"username\":\"robot\",\"password\":\"$SECRET\",\"verify\":false}" \
    >/dev/null

mkdir -p "$(dirname "$RESULTS")"
status=0
REGKEEPER_TOKEN="$TOKEN" python3 bench/replicas-load/load.py \
    --urls "$(IFS=,; echo "${URLS[*]}")" --image "$IMAGE" --secret "$SECRET" \
    --requests "$REQUESTS" --concurrency "$CONCURRENCY" --out "$RESULTS" || status=$?
echo "results: $RESULTS" >&2
# The audit log holds one credential.resolve entry per request, across all replicas.
psql "$DATABASE_URL" -tAc "SELECT count(*) FROM audit_log WHERE action = 'credential.resolve'" |
    sed 's/^/audit entries for resolves: /' >&2
exit $status

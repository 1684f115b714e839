#!/usr/bin/env bash
# Consumer benchmarks (issue 4, part 5), each side by side with its floor or peer in the
# same run. See bench/README.md.
#
#   1. REST resolve throughput and latency (wrk, 64 connections) of `POST resolve` —
#      a docker credential (a stored password) asked for the same image each time, or
#      for a new image each time under a random one of the path prefixes, and an ECR
#      credential with a warm token — next to `GET /healthz` and `GET /api/v1/me` of the
#      same server, on a server with 10 credentials and on one with 100,000, each
#      credential with its own path prefix.
#   2. `docker-credential-regkeeper get` process latency (hyperfine, warm token) next to
#      Debian's `docker-credential-ecr-login get` with a warm cache, `/bin/true`, and
#      the same resolve from a bare client (consumers/bare-client.rs, built with rustc).
#
#   bench/consumers.sh [ROUNDS]     # default 3; the tables show medians over rounds
#
# Installs what is missing: wrk, amazon-ecr-credential-helper, curl, jq (apt, without
# recommends), hyperfine 1.20 into target/bench-tools (cargo; Debian 12's 1.15 cannot
# give a command its stdin without a shell), moto in .venv-test (scripts/test
# --setup-only). Builds regkeeper and regkeeper-consumers in release mode.
#
# Environment:
#   PARTS        which parts to run: "rest helper" (default), "rest" or "helper"
#   CREDENTIALS  credentials of the large server (default 100000)
#   SMALL        credentials of the small server (default 10)
#   DURATION     seconds per wrk run (default 10)
#   CONNECTIONS  wrk connections (default 64)     THREADS  wrk threads (default 2)
#   HELPER_RUNS  hyperfine runs per command and round (default 300)
#   SEED_CONCURRENCY  concurrent API clients while seeding (default 8)
#   RESULTS      JSON results file (default target/bench/consumers.json)
#   KEEP_WORK    set to keep the temporary directory (data, logs, raw runs)
#   BUILD=0      use the binaries already in target/release instead of building
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${1:-3}
PARTS=${PARTS:-rest helper}
CREDENTIALS=${CREDENTIALS:-100000}
SMALL=${SMALL:-10}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
HELPER_RUNS=${HELPER_RUNS:-300}
SEED_CONCURRENCY=${SEED_CONCURRENCY:-8}
RESULTS=${RESULTS:-$ROOT/target/bench/consumers.json}
export CARGO_TARGET_DIR="$ROOT/target"
REGKEEPER="$CARGO_TARGET_DIR/release/regkeeper"
HELPER="$CARGO_TARGET_DIR/release/docker-credential-regkeeper"
ECR_LOGIN=/usr/bin/docker-credential-ecr-login
MOTO="$ROOT/.venv-test/bin/moto_server"
MOTO_PROXY="$ROOT/.venv-test/bin/moto_proxy"
PYTHON="$ROOT/.venv-test/bin/python"
LUA="$ROOT/bench/consumers/wrk.lua"
SEED="$ROOT/bench/consumers/seed.py"

# Fixed, benchmark-only values.
ADMIN_TOKEN=rk_bench_consumers_admin_token_0123456789
ECR_HOST=123456789012.dkr.ecr.us-east-1.amazonaws.com # moto's default account
AWS_KEY_ID=AKIAIOSFODNN7EXAMPLE
AWS_SECRET=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
DOCKER_HOST_NAME=registry.bench.test

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf '==> error: %s\n' "$*" >&2
    exit 1
}
part() { [[ " $PARTS " == *" $1 "* ]]; }
as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# --- Prerequisites ------------------------------------------------------------

missing=()
for package in wrk amazon-ecr-credential-helper curl jq python3; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' || missing+=("$package")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    # Without recommends: the ECR helper recommends docker.io, which is not needed here.
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# hyperfine with --input (1.16 or later) gives each command its stdin without a shell
# in between; Debian 12's 1.15 cannot, so a newer one is built from crates.io.
HYPERFINE=$(command -v hyperfine || true)
if [[ -z "$HYPERFINE" ]] || ! "$HYPERFINE" --help 2>/dev/null | grep -q -- '--input'; then
    HYPERFINE="$ROOT/target/bench-tools/bin/hyperfine"
    if [[ ! -x "$HYPERFINE" ]]; then
        say "installing hyperfine 1.20.0 into target/bench-tools (Debian's has no --input)"
        cargo install hyperfine --version 1.20.0 --locked --root "$ROOT/target/bench-tools" >&2
    fi
fi
if [[ ! -x "$MOTO" || ! -x "$MOTO_PROXY" ]]; then
    say "no moto in .venv-test: running scripts/test --setup-only"
    scripts/test --setup-only >&2
fi

if [[ "${BUILD:-1}" != 0 ]]; then
    say "building regkeeper (release)"
    cargo build --release -p regkeeper >&2
    if part helper; then
        [[ -d crates/consumers ]] || die "crates/consumers is missing: run with PARTS=rest"
        say "building docker-credential-regkeeper (release)"
        cargo build --release -p regkeeper-consumers >&2
    fi
fi
[[ -x "$REGKEEPER" ]] || die "no $REGKEEPER"
if part helper; then
    [[ -x "$HELPER" ]] || die "no $HELPER"
fi

# --- Processes ----------------------------------------------------------------

WORK=$(mktemp -d)
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

wait_for_line() { # FILE PATTERN PID — prints the first match of PATTERN in FILE
    local found
    for _ in $(seq 1 600); do
        found=$(grep -o -m1 "$2" "$1" 2>/dev/null || true)
        [[ -n "$found" ]] && { printf '%s\n' "$found"; return 0; }
        kill -0 "$3" 2>/dev/null || { cat "$1" >&2; return 1; }
        sleep 0.1
    done
    cat "$1" >&2
    return 1
}

# moto_server for regkeeper's ECR logins, with none of the caller's AWS_* settings.
env -i PATH="$PATH" HOME="$WORK" PYTHONUNBUFFERED=1 "$MOTO" -H 127.0.0.1 -p 0 >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
MOTO_URL=$(wait_for_line "$WORK/moto.log" 'http://127.0.0.1:[0-9]*' "${PIDS[-1]}") || die "moto_server did not start"
MOTO_VERSION=$("$PYTHON" -c 'import moto; print(moto.__version__)')
say "moto_server $MOTO_VERSION at $MOTO_URL"

declare -A SERVER_URL SERVER_PID
start_server() { # NAME — starts (or restarts) a server on the data directory of NAME
    local name=$1
    mkdir -p "$WORK/$name"
    # Default settings (log level info, SQLite in the data directory); the background
    # refresher runs as it would in production.
    env -i PATH="$PATH" HOME="$WORK" \
        REGKEEPER_DATA_DIR="$WORK/$name/data" \
        REGKEEPER_BOOTSTRAP_TOKEN="$ADMIN_TOKEN" \
        AWS_ENDPOINT_URL="$MOTO_URL" \
        "$REGKEEPER" serve --listen 127.0.0.1:0 >"$WORK/$name/stdout" 2>>"$WORK/$name/log" &
    PIDS+=($!)
    SERVER_PID[$name]=$!
    SERVER_URL[$name]=$(wait_for_line "$WORK/$name/stdout" 'http://127.0.0.1:[0-9]*' "$!") ||
        { cat "$WORK/$name/log" >&2; die "regkeeper ($name) did not start"; }
    say "regkeeper ($name) at ${SERVER_URL[$name]} (pid $!)"
}

api() { # NAME METHOD PATH [BODY] — prints the body; fails unless 2xx
    local url=${SERVER_URL[$1]}
    curl -fsS -X "$2" -H "Authorization: Bearer $ADMIN_TOKEN" ${4:+-H 'Content-Type: application/json' --data "$4"} "$url$3"
}

# --- Set-up of the two servers ------------------------------------------------

MIDDLE_SMALL=$((SMALL / 2))
MIDDLE_LARGE=$((CREDENTIALS / 2))
declare -A MIDDLE=([small]=$MIDDLE_SMALL [large]=$MIDDLE_LARGE)
declare -A COUNT=([small]=$SMALL [large]=$CREDENTIALS)
declare -A SEED_JSON
RESOLVE_PATH=

setup_server() { # NAME
    local name=$1 seeded
    start_server "$name"
    say "seeding ${COUNT[$name]} docker credentials into $name (concurrency $SEED_CONCURRENCY)"
    seeded=$(REGKEEPER_TOKEN=$ADMIN_TOKEN python3 "$SEED" "${SERVER_URL[$name]}" '~admin' 0 "${COUNT[$name]}" "$SEED_CONCURRENCY")
    SEED_JSON[$name]=$seeded
    say "  $seeded"
    api "$name" POST '/api/v1/workspaces/%7Eadmin/credentials' "$(jq -cn --arg host "$ECR_HOST" \
        --arg user "$AWS_KEY_ID" --arg password "$AWS_SECRET" \
        '{name: "bench-ecr", type: "ecr", registry: $host, username: $user, password: $password, verify: false}')" >/dev/null
    # The endpoint that resolves in the caller's personal workspace, else the older
    # per-workspace one.
    if [[ -z "$RESOLVE_PATH" ]]; then
        if api "$name" POST /api/v1/resolve "{\"image\":\"$ECR_HOST/warm/app:1\"}" >/dev/null 2>&1; then
            RESOLVE_PATH=/api/v1/resolve
        else
            RESOLVE_PATH=/api/v1/workspaces/%7Eadmin/resolve
        fi
        say "resolving through POST $RESOLVE_PATH"
    fi
    # One resolve mints the ECR token (through moto); the timed ones find it warm.
    api "$name" POST "$RESOLVE_PATH" "{\"image\":\"$ECR_HOST/warm/app:1\"}" >"$WORK/$name/ecr-resolved.json"
    jq -e '.username == "AWS" and (.expiresAt | length > 0)' "$WORK/$name/ecr-resolved.json" >/dev/null ||
        die "$name: the ECR resolve did not give an ECR token: $(cat "$WORK/$name/ecr-resolved.json")"
    # The docker resolve must pick the middle credential out of all of them.
    local expected
    expected=$(api "$name" POST "$RESOLVE_PATH" "{\"image\":\"$DOCKER_HOST_NAME/team-$(printf %06d "${MIDDLE[$name]}")/app:1\"}" | jq -r .username)
    [[ "$expected" == "user-${MIDDLE[$name]}" ]] || die "$name: docker resolve gave user $expected, not user-${MIDDLE[$name]}"
}

cpu_ticks() { # PID — user+system clock ticks of a process
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
context_switches() { # PID — voluntary and involuntary context switches of all its threads
    # Threads may end while this reads them.
    { cat /proc/"$1"/task/*/status 2>/dev/null || true; } | awk '/ctxt_switches/ { n += $2 } END { print n + 0 }'
}
busy_ticks() { # all CPUs: busy and total clock ticks
    awk '/^cpu / { idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i; print total - idle, total }' /proc/stat
}

docker_image() { # NAME — the image whose credential is the middle one of NAME's
    printf '%s/team-%06d/app:1' "$DOCKER_HOST_NAME" "${MIDDLE[$1]}"
}

# A server whose database writes are stuck answers every resolve with 500 (or after the
# 10 s busy time-out). Seen here when wrk closes its connections at the end of a run
# while resolves are in flight: see "Findings" in bench/README.md. The benchmark then
# restarts that server on the same data and repeats a run that had failed requests.
writes_work() { # NAME
    api_timed "$1" 5 POST "$RESOLVE_PATH" "{\"image\":\"$(docker_image "$1")\"}" >/dev/null 2>&1
}
api_timed() { # NAME SECONDS METHOD PATH BODY
    curl -fsS -m "$2" -X "$3" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
        --data "$5" "${SERVER_URL[$1]}$4"
}
check_server() { # NAME CONTEXT — restarts NAME if its writes are stuck; true if it was
    local name=$1
    writes_work "$name" && return 1
    local first
    first=$(grep -m1 -E 'non-zero transaction depth|database is locked' "$WORK/$name/log" | cut -c1-300 || true)
    say "  $name: resolves fail after $2; restarting it (first error: ${first:-none logged})"
    jq -cn --arg server "$name" --arg after "$2" --arg error "$first" \
        --argjson errors "$(grep -c -E 'non-zero transaction depth|database is locked' "$WORK/$name/log" || true)" \
        '{server: $server, after: $after, first_error: $error, error_lines: $errors}' >>"$WORK/stuck.jsonl"
    kill "${SERVER_PID[$name]}" 2>/dev/null || true
    wait "${SERVER_PID[$name]}" 2>/dev/null || true
    # Keep the evidence, then start on the same data.
    mv "$WORK/$name/log" "$WORK/$name/log.stuck-$(date +%s)"
    start_server "$name"
    writes_work "$name" || die "$name: resolves still fail after a restart"
    # Warm the in-memory ECR token again (read back from the database, no mint).
    api_timed "$name" 30 POST "$RESOLVE_PATH" "{\"image\":\"$ECR_HOST/warm/app:1\"}" >/dev/null
    return 0
}

# --- Part 1: REST throughput --------------------------------------------------

# Context switches of the server come from `perf stat` where it works, else from
# /proc (which misses threads that end during a run).
PERF=0
if command -v perf >/dev/null && perf stat -x, -e context-switches -p $$ -o /dev/null -- true 2>/dev/null; then
    PERF=1
fi

# `show` (GET one credential by name) is a diagnostic row: the same authentication and
# access check as resolve, no audit entry, no secret, no prefix search.
# `resolve-docker` asks for one image again and again (what the server's caches serve);
# `resolve-distinct` asks for a new image every time under a random one of the
# server's path prefixes, so the best-match query runs for every request.
ENDPOINTS=(healthz me show resolve-docker resolve-distinct resolve-ecr)
wrk_once() { # SERVER ENDPOINT ROUND — one wrk run; appends its JSON line to $WORK/run.json
    local name=$1 endpoint=$2 round=$3 method=GET path body='' token=$ADMIN_TOKEN distinct_host='' distinct_count=''
    case $endpoint in
    healthz) path=/healthz token='' ;;
    me) path=/api/v1/me ;;
    show) path=/api/v1/workspaces/%7Eadmin/credentials/$(printf 'bench-%06d' "${MIDDLE[$name]}") ;;
    resolve-docker) method=POST path=$RESOLVE_PATH body="{\"image\":\"$(docker_image "$name")\"}" ;;
    resolve-distinct)
        method=POST path=$RESOLVE_PATH body="{\"image\":\"$(docker_image "$name")\"}"
        distinct_host=$DOCKER_HOST_NAME distinct_count=${COUNT[$name]}
        ;;
    resolve-ecr) method=POST path=$RESOLVE_PATH body="{\"image\":\"$ECR_HOST/team/app:1\"}" ;;
    esac
    local pid=${SERVER_PID[$name]} load server_before switches_before machine_before perf_pid=
    load=$(cut -d' ' -f1 /proc/loadavg)
    server_before=$(cpu_ticks "$pid")
    switches_before=$(context_switches "$pid")
    machine_before=$(busy_ticks)
    : >"$WORK/wrk.out"
    if ((PERF)); then
        # Counts every thread of the server, including threads that end during the run.
        perf stat -x, -e context-switches -p "$pid" -o "$WORK/perf.csv" &
        perf_pid=$!
    fi
    BENCH_METHOD=$method BENCH_TOKEN=$token BENCH_BODY=$body BENCH_OUT="$WORK/wrk.out" \
        BENCH_DISTINCT_HOST=$distinct_host BENCH_DISTINCT_COUNT=$distinct_count \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s "$LUA" "${SERVER_URL[$name]}$path" >"$WORK/wrk.stdout"
    local server_after switches_after machine_after
    server_after=$(cpu_ticks "$pid")
    switches_after=$(context_switches "$pid")
    machine_after=$(busy_ticks)
    if [[ -n "$perf_pid" ]]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        switches_before=0
        switches_after=$(awk -F, '$3 == "context-switches" { print $1 + 0 }' "$WORK/perf.csv")
    fi
    jq -c --arg server "$name" --arg endpoint "$endpoint" --argjson round "$round" \
        --argjson server_ticks "$((server_after - server_before))" \
        --argjson switches "$((switches_after - switches_before))" \
        --arg machine "$machine_before $machine_after" --arg load "$load" --argjson hz "$(getconf CLK_TCK)" \
        '. + {server: $server, endpoint: $endpoint, round: $round, load1: ($load | tonumber),
              server_cpu_s: ($server_ticks / $hz), server_context_switches: $switches,
              machine_busy_s: (($machine | split(" ") | map(tonumber)) as $m | ($m[2] - $m[0]) / $hz),
              machine_total_s: (($machine | split(" ") | map(tonumber)) as $m | ($m[3] - $m[1]) / $hz)}' \
        "$WORK/wrk.out" >"$WORK/run.json"
}
wrk_run() { # SERVER ENDPOINT ROUND
    local attempt stuck
    for attempt in 1 2 3; do
        wrk_once "$@"
        stuck=0
        check_server "$1" "wrk $2 (round $3)" && stuck=1
        if jq -e '.non_2xx_3xx + .socket_errors == 0' "$WORK/run.json" >/dev/null; then
            break
        fi
        say "  $1 $2: $(jq -r '.non_2xx_3xx + .socket_errors' "$WORK/run.json") failed requests (attempt $attempt)"
        ((stuck)) || break # failures that a stuck server does not explain are reported as they are
    done
    jq -c --argjson attempts "$attempt" '. + {attempts: $attempts}' "$WORK/run.json" >>"$WORK/rest.jsonl"
    say "  $1 $2: $(jq -r '"\(.rps) req/s, p50 \(.p50_us) µs, p99 \(.p99_us) µs, failed \(.non_2xx_3xx + .socket_errors), server CPU \(.server_cpu_s) s"' "$WORK/run.json")"
}

# --- Part 2: credential helpers -----------------------------------------------

ECR_HOME="$WORK/ecr-login-home"
helper_env() { # the one environment both helpers and /bin/true run in
    env -i PATH="$PATH" HOME="$ECR_HOME" \
        REGKEEPER_URL="${SERVER_URL[small]}" REGKEEPER_TOKEN="$ADMIN_TOKEN" \
        AWS_ACCESS_KEY_ID="$AWS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET" \
        HTTPS_PROXY="http://$PROXY_ADDRESS" AWS_CA_BUNDLE="$PROXY_CA" \
        "$@"
}

setup_helpers() {
    printf '%s\n' "$ECR_HOST" >"$WORK/server-url.txt"
    mkdir -p "$ECR_HOME"
    # moto_proxy: an HTTPS proxy that answers AWS calls with an in-process moto; the
    # ECR helper reaches it through HTTPS_PROXY and trusts its CA (AWS_CA_BUNDLE).
    env -i PATH="$PATH" HOME="$WORK" PYTHONUNBUFFERED=1 "$MOTO_PROXY" -H 127.0.0.1 -p 0 >"$WORK/moto-proxy.log" 2>&1 &
    PIDS+=($!)
    PROXY_ADDRESS=$(wait_for_line "$WORK/moto-proxy.log" '127.0.0.1:[0-9]*' "${PIDS[-1]}") || die "moto_proxy did not start"
    PROXY_CA=$("$PYTHON" -c 'from moto.moto_proxy.certificate_creator import CertificateCreator as C; print(C.cacert)')
    say "moto_proxy at $PROXY_ADDRESS"

    # Warm the ECR helper's cache with one real `get` through moto_proxy. moto answers
    # with an expiry in 2015, so the helper would treat that entry as stale on every
    # call (it uses an entry until half its lifetime has passed) and call ECR again;
    # the entry it wrote is therefore given the lifetime ECR really grants (12 h from
    # now), keeping the key, token and format the helper wrote itself.
    helper_env "$ECR_LOGIN" get <"$WORK/server-url.txt" >"$WORK/ecr-login-first.json"
    "$PYTHON" - "$ECR_HOME/.ecr/cache.json" <<'EOF'
import datetime, json, sys
path = sys.argv[1]
with open(path) as f:
    cache = json.load(f)
now = datetime.datetime.now(datetime.timezone.utc)
for entry in cache["Registries"].values():
    entry["RequestedAt"] = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    entry["ExpiresAt"] = (now + datetime.timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
with open(path, "w") as f:
    json.dump(cache, f, indent=2)
EOF
    helper_env "$ECR_LOGIN" get <"$WORK/server-url.txt" >"$WORK/ecr-login-warm.json"
    cmp -s "$WORK/ecr-login-first.json" "$WORK/ecr-login-warm.json" || die "ecr-login warm answer differs"
    grep -q 'Using cached token' "$ECR_HOME/.ecr/log/ecr-login.log" || die "ecr-login did not use its cache"

    # regkeeper's helper, against the small server whose ECR token is already minted.
    helper_env "$HELPER" get <"$WORK/server-url.txt" >"$WORK/regkeeper-helper.json" ||
        die "docker-credential-regkeeper get failed"
    jq -e --slurpfile resolved "$WORK/small/ecr-resolved.json" \
        '.Username == "AWS" and .Secret == $resolved[0].secret and (.ServerURL | length > 0)' \
        "$WORK/regkeeper-helper.json" >/dev/null ||
        die "docker-credential-regkeeper did not print the warm ECR token: $(jq -c '.Secret = "…"' "$WORK/regkeeper-helper.json")"
    say "both helpers answer $ECR_HOST from a warm token"

    # The floor of the helper's `get`: a new process that sends the same resolve on a
    # new connection with nothing else (bench/consumers/bare-client.rs).
    BARE="$ROOT/target/bench-tools/bare-client"
    if [[ ! -x "$BARE" || "$ROOT/bench/consumers/bare-client.rs" -nt "$BARE" ]]; then
        mkdir -p "$ROOT/target/bench-tools"
        rustc -O --edition 2021 -o "$BARE" "$ROOT/bench/consumers/bare-client.rs" || die "cannot build $BARE"
    fi
    helper_env "$BARE" <"$WORK/server-url.txt" >"$WORK/bare-client.json" || die "bare-client failed"
    jq -e --slurpfile resolved "$WORK/small/ecr-resolved.json" '.secret == $resolved[0].secret' \
        "$WORK/bare-client.json" >/dev/null || die "bare-client did not get the warm ECR token"
}

helper_round() { # ROUND
    local round=$1 input="$WORK/server-url.txt" load attempt
    for attempt in 1 2; do
        check_server small "the REST runs, before helper round $round" || true
        load=$(cut -d' ' -f1 /proc/loadavg)
        # -N: no shell; every command, /bin/true included, gets the server URL on stdin.
        # `regkeeper version` (process start, no request) is a diagnostic row.
        if helper_env "$HYPERFINE" -N --input "$input" --style basic -w 20 -r "$HELPER_RUNS" \
            --export-json "$WORK/hyperfine-$round.json" \
            -n true /bin/true \
            -n ecr-login "$ECR_LOGIN get" \
            -n regkeeper "$HELPER get" \
            -n regkeeper-version "$HELPER version" \
            -n bare-client "$BARE" >"$WORK/hyperfine-$round.txt" 2>&1; then
            break
        fi
        ((attempt == 2)) && { cat "$WORK/hyperfine-$round.txt" >&2; die "hyperfine failed twice"; }
        say "  hyperfine failed (a helper exited non-zero); checking the server and repeating"
    done
    jq -c --argjson round "$round" --arg load "$load" \
        '.results[] | {round: $round, load1: ($load | tonumber), command: .command, mean_s: .mean, stddev_s: .stddev,
                       median_s: .median, min_s: .min, max_s: .max, user_s: .user, system_s: .system,
                       runs: (.times | length)}' \
        "$WORK/hyperfine-$round.json" >>"$WORK/helper.jsonl"
    say "  $(jq -r '"\(.command): mean \(.mean_s * 1e6 | floor) µs"' <<<"$(tail -n5 "$WORK/helper.jsonl")" | paste -sd ';')"
}

# --- Run ------------------------------------------------------------------------

say "load before set-up: $(cut -d' ' -f1-3 /proc/loadavg)"
setup_server small
if part rest; then
    setup_server large
fi
if part helper; then
    setup_helpers
    ECR_CALLS_BEFORE=$(grep -c 'Calling ECR.GetAuthorizationToken' "$ECR_HOME/.ecr/log/ecr-login.log" || true)
fi

for round in $(seq 1 "$ROUNDS"); do
    say "round $round/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    if part rest; then
        for name in small large; do
            for endpoint in "${ENDPOINTS[@]}"; do
                wrk_run "$name" "$endpoint" "$round"
            done
        done
    fi
    if part helper; then
        helper_round "$round"
    fi
done

ECR_CALLS_DURING=0
if part helper; then
    ECR_CALLS_AFTER=$(grep -c 'Calling ECR.GetAuthorizationToken' "$ECR_HOME/.ecr/log/ecr-login.log" || true)
    ECR_CALLS_DURING=$((ECR_CALLS_AFTER - ECR_CALLS_BEFORE))
    ((ECR_CALLS_DURING == 0)) || say "warning: ecr-login called ECR $ECR_CALLS_DURING times while timed"
fi

# Every ECR mint regkeeper made (one per server at set-up), counted in moto's log.
MOTO_ECR_CALLS=$(grep -c 'POST / HTTP' "$WORK/moto.log" || true)

mkdir -p "$(dirname "$RESULTS")"
touch "$WORK/rest.jsonl" "$WORK/helper.jsonl" "$WORK/stuck.jsonl"
BENCH_ROOT=$ROOT BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION BENCH_CONNECTIONS=$CONNECTIONS \
    BENCH_THREADS=$THREADS BENCH_HELPER_RUNS=$HELPER_RUNS BENCH_SMALL=$((SMALL + 1)) \
    BENCH_LARGE=$((CREDENTIALS + 1)) BENCH_RESOLVE_PATH=$RESOLVE_PATH BENCH_MOTO=$MOTO_VERSION \
    BENCH_SEED_SMALL=${SEED_JSON[small]:-null} BENCH_SEED_LARGE=${SEED_JSON[large]:-null} \
    BENCH_HYPERFINE=$HYPERFINE BENCH_PERF=$PERF BENCH_ECR_HOST=$ECR_HOST BENCH_ECR_LOGIN_CALLS=$ECR_CALLS_DURING BENCH_MOTO_CALLS=$MOTO_ECR_CALLS \
    python3 "$ROOT/bench/consumers/report.py" "$WORK" "$RESULTS"

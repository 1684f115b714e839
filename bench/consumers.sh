#!/usr/bin/env bash
# Consumer benchmarks (issue 4, part 5), each side by side with its floor or peer in the
# same run. See bench/README.md.
#
#   1. REST resolve throughput (wrk, 64 connections): `POST resolve` for a docker
#      credential (a stored password) and for an ECR credential with a warm token,
#      next to `GET /healthz` and `GET /api/v1/me` of the same server, on a server with
#      10 credentials and on one with 100,000 (each with its own path prefix).
#   2. `docker-credential-regkeeper get` process latency (hyperfine, warm token) next to
#      Debian's `docker-credential-ecr-login get` with a warm cache, and `/bin/true`.
#
#   bench/consumers.sh [ROUNDS]     # default 3; the tables show medians over rounds
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
for package in wrk hyperfine amazon-ecr-credential-helper curl jq python3; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' || missing+=("$package")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    # Without recommends: the ECR helper recommends docker.io, which is not needed here.
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
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
start_server() { # NAME
    local name=$1
    mkdir -p "$WORK/$name"
    # Default settings (log level info, SQLite in the data directory); the background
    # refresher runs as it would in production.
    env -i PATH="$PATH" HOME="$WORK" \
        REGKEEPER_DATA_DIR="$WORK/$name/data" \
        REGKEEPER_BOOTSTRAP_TOKEN="$ADMIN_TOKEN" \
        AWS_ENDPOINT_URL="$MOTO_URL" \
        "$REGKEEPER" serve --listen 127.0.0.1:0 >"$WORK/$name/stdout" 2>"$WORK/$name/log" &
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
busy_ticks() { # all CPUs: busy and total clock ticks
    awk '/^cpu / { idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i; print total - idle, total }' /proc/stat
}

# --- Part 1: REST throughput --------------------------------------------------

ENDPOINTS=(healthz me resolve-docker resolve-ecr)
wrk_run() { # SERVER ENDPOINT ROUND
    local name=$1 endpoint=$2 round=$3 method=GET path body='' token=$ADMIN_TOKEN
    case $endpoint in
    healthz) path=/healthz token='' ;;
    me) path=/api/v1/me ;;
    resolve-docker)
        method=POST path=$RESOLVE_PATH
        body="{\"image\":\"$DOCKER_HOST_NAME/team-$(printf %06d "${MIDDLE[$name]}")/app:1\"}"
        ;;
    resolve-ecr) method=POST path=$RESOLVE_PATH body="{\"image\":\"$ECR_HOST/team/app:1\"}" ;;
    esac
    local pid=${SERVER_PID[$name]} server_before machine_before load
    load=$(cut -d' ' -f1 /proc/loadavg)
    server_before=$(cpu_ticks "$pid")
    machine_before=$(busy_ticks)
    BENCH_METHOD=$method BENCH_TOKEN=$token BENCH_BODY=$body BENCH_OUT="$WORK/wrk.out" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s "$LUA" "${SERVER_URL[$name]}$path" >"$WORK/wrk.stdout"
    local server_after machine_after
    server_after=$(cpu_ticks "$pid")
    machine_after=$(busy_ticks)
    local line
    line=$(tail -n1 "$WORK/wrk.out")
    jq -c --arg server "$name" --arg endpoint "$endpoint" --argjson round "$round" \
        --argjson server_ticks "$((server_after - server_before))" \
        --arg machine "$machine_before $machine_after" --arg load "$load" --argjson hz "$(getconf CLK_TCK)" \
        '. + {server: $server, endpoint: $endpoint, round: $round, load1: ($load | tonumber),
              server_cpu_s: ($server_ticks / $hz),
              machine_busy_s: (($machine | split(" ") | map(tonumber)) as $m | ($m[2] - $m[0]) / $hz),
              machine_total_s: (($machine | split(" ") | map(tonumber)) as $m | ($m[3] - $m[1]) / $hz)}' \
        <<<"$line" >>"$WORK/rest.jsonl"
    say "  $name $endpoint: $(jq -r '"\(.rps) req/s, p50 \(.p50_us) µs, p99 \(.p99_us) µs, non-2xx \(.non_2xx_3xx), server CPU \(.server_cpu_s) s"' <<<"$(tail -n1 "$WORK/rest.jsonl")")"
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
}

helper_round() { # ROUND
    local round=$1 input="$WORK/server-url.txt" load
    load=$(cut -d' ' -f1 /proc/loadavg)
    # hyperfine 1.15 (Debian 12) gives -N commands no stdin, so the commands run in sh
    # with stdin redirected; hyperfine subtracts the measured cost of starting sh.
    helper_env hyperfine --style basic -w 20 -r "$HELPER_RUNS" --export-json "$WORK/hyperfine-$round.json" \
        -n true "/bin/true <$input" \
        -n ecr-login "$ECR_LOGIN get <$input" \
        -n regkeeper "$HELPER get <$input" >"$WORK/hyperfine-$round.txt"
    jq -c --argjson round "$round" --arg load "$load" \
        '.results[] | {round: $round, load1: ($load | tonumber), command: .command, mean_s: .mean, stddev_s: .stddev,
                       median_s: .median, min_s: .min, max_s: .max, user_s: .user, system_s: .system,
                       runs: (.times | length)}' \
        "$WORK/hyperfine-$round.json" >>"$WORK/helper.jsonl"
    say "  $(jq -r '"\(.command): median \(.median_s * 1e6 | floor) µs"' <<<"$(tail -n3 "$WORK/helper.jsonl")" | paste -sd ';')"
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
touch "$WORK/rest.jsonl" "$WORK/helper.jsonl"
python3 - "$WORK" "$RESULTS" <<EOF
import json, os, platform, statistics, subprocess, sys, datetime
work, results_path = sys.argv[1], sys.argv[2]
def load(name):
    with open(f"{work}/{name}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
def version(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return None
rest, helper = load("rest"), load("helper")
med = statistics.median
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None)},
    "commit": version(["git", "-C", "$ROOT", "rev-parse", "--short", "HEAD"]),
    "tree_dirty": bool(version(["git", "-C", "$ROOT", "status", "--porcelain"])),
    "rounds": int("$ROUNDS"), "duration_s": int("$DURATION"), "connections": int("$CONNECTIONS"),
    "threads": int("$THREADS"), "helper_runs": int("$HELPER_RUNS"),
    "credentials": {"small": int("$SMALL") + 1, "large": int("$CREDENTIALS") + 1},
    "resolve_path": "$RESOLVE_PATH", "moto": "$MOTO_VERSION",
    "seeding": {k: json.loads(v) for k, v in [("small", """${SEED_JSON[small]:-null}"""), ("large", """${SEED_JSON[large]:-null}""")] if v != "null"},
    "versions": {"wrk": version(["wrk", "-v"]), "hyperfine": version(["hyperfine", "--version"]),
                 "ecr_login": version(["dpkg-query", "-W", "-f", "\${Version}", "amazon-ecr-credential-helper"])},
    "ecr_login_ecr_calls_while_timed": int("$ECR_CALLS_DURING"),
    "regkeeper_ecr_mints_total": int("$MOTO_ECR_CALLS"),
}
summary = {"rest": {}, "helper": {}, "targets": {}}
lines = []
out = lines.append
if rest:
    out(f"REST, wrk -t{meta['threads']} -c{meta['connections']} -d{meta['duration_s']}s, median of {meta['rounds']} rounds; "
        f"resolve = POST {meta['resolve_path']}; client and server share the {meta['machine']['cores']} cores.\n")
    out("| server | endpoint | req/s | p50 | p99 | vs /healthz | vs /api/v1/me | server CPU per request | non-2xx |")
    out("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for server in ("small", "large"):
        runs = {e: [r for r in rest if r["server"] == server and r["endpoint"] == e]
                for e in ("healthz", "me", "resolve-docker", "resolve-ecr")}
        figures = {}
        for endpoint, rows in runs.items():
            if not rows:
                continue
            figures[endpoint] = {
                "rps": med(r["rps"] for r in rows),
                "p50_us": med(r["p50_us"] for r in rows),
                "p99_us": med(r["p99_us"] for r in rows),
                "server_cpu_us_per_request": med(r["server_cpu_s"] / r["requests"] * 1e6 for r in rows),
                "non_2xx": sum(r["non_2xx_3xx"] + r["socket_errors"] for r in rows),
                "rps_runs": [r["rps"] for r in rows],
                "load1": [r["load1"] for r in rows],
                "other_busy_cores": med(max(0.0, (r["machine_busy_s"] - r["server_cpu_s"]) / r["seconds"]) for r in rows),
            }
        summary["rest"][server] = figures
        count = meta["credentials"][server]
        for endpoint, f in figures.items():
            label = {"healthz": "GET /healthz", "me": "GET /api/v1/me",
                     "resolve-docker": "POST resolve, docker", "resolve-ecr": "POST resolve, ECR warm"}[endpoint]
            f["vs_healthz"] = f["rps"] / figures["healthz"]["rps"]
            f["vs_me"] = f["rps"] / figures["me"]["rps"]
            out(f"| {count:,} creds | {label} | {f['rps']:,.0f} | {f['p50_us'] / 1000:.2f} ms | {f['p99_us'] / 1000:.2f} ms "
                f"| {f['vs_healthz']:.2f}x | {f['vs_me']:.2f}x | {f['server_cpu_us_per_request']:.0f} µs | {f['non_2xx']} |")
    out("")
    small, large = summary["rest"].get("small", {}), summary["rest"].get("large", {})
    if "resolve-docker" in large and "resolve-docker" in small:
        for endpoint in ("resolve-docker", "resolve-ecr", "me", "healthz"):
            large[endpoint]["vs_small"] = large[endpoint]["rps"] / small[endpoint]["rps"]
        ratio = large["resolve-docker"]["vs_small"]
        out(f"- {meta['credentials']['large']:,} against {meta['credentials']['small']:,} credentials, docker resolve: "
            f"**{ratio:.2f}x** the rate (ECR resolve {large['resolve-ecr']['vs_small']:.2f}x, /api/v1/me {large['me']['vs_small']:.2f}x)")
        summary["targets"]["resolve_100k_within_10pct_of_10"] = {"ratio": ratio, "met": ratio >= 0.9}
    if "resolve-docker" in small:
        r = small["resolve-docker"]
        summary["targets"]["resolve_at_least_half_of_trivial"] = {
            "vs_healthz": r["vs_healthz"], "vs_me": r["vs_me"],
            "met_vs_healthz": r["vs_healthz"] >= 0.5, "met_vs_me": r["vs_me"] >= 0.5}
        out(f"- docker resolve ({meta['credentials']['small']:,} creds): {r['vs_healthz']:.2f}x /healthz, {r['vs_me']:.2f}x /api/v1/me (target ≥ 0.5x)")
    loads = [r["load1"] for r in rest]
    others = [max(0.0, (r["machine_busy_s"] - r["server_cpu_s"]) / r["seconds"]) for r in rest]
    out(f"- load average (1 min) at the start of each wrk run: {min(loads):.2f} to {max(loads):.2f}; "
        f"CPU used by everything but the server during a run (wrk included): {min(others):.2f} to {max(others):.2f} cores")
    out("")
if helper:
    out(f"Credential helpers, \`get\` of {'$ECR_HOST'} with a warm token, hyperfine ({meta['helper_runs']} runs per "
        f"round, sh start-up subtracted), median over {meta['rounds']} rounds of each round's mean and median:\n")
    out("| command | mean | median | user | system | vs /bin/true | vs ecr-login |")
    out("|---|---:|---:|---:|---:|---:|---:|")
    figures = {}
    for command in ("true", "ecr-login", "regkeeper"):
        rows = [r for r in helper if r["command"] == command]
        figures[command] = {"mean_ms": med(r["mean_s"] for r in rows) * 1e3, "median_ms": med(r["median_s"] for r in rows) * 1e3,
                            "user_ms": med(r["user_s"] for r in rows) * 1e3, "system_ms": med(r["system_s"] for r in rows) * 1e3,
                            "mean_ms_runs": [r["mean_s"] * 1e3 for r in rows], "load1": [r["load1"] for r in rows]}
    floor, peer = figures["true"]["mean_ms"], figures["ecr-login"]["mean_ms"]
    names = {"true": "/bin/true (floor)", "ecr-login": "docker-credential-ecr-login get (warm cache)",
             "regkeeper": "docker-credential-regkeeper get (warm token)"}
    for command, f in figures.items():
        f["vs_true"] = f["mean_ms"] / floor
        f["vs_ecr_login"] = f["mean_ms"] / peer
        out(f"| {names[command]} | {f['mean_ms']:.2f} ms | {f['median_ms']:.2f} ms | {f['user_ms']:.2f} ms | {f['system_ms']:.2f} ms "
            f"| {f['vs_true']:.1f}x | {f['vs_ecr_login']:.2f}x |")
    summary["helper"] = figures
    rk = figures["regkeeper"]
    speedup = peer / rk["mean_ms"]
    out("")
    out(f"- regkeeper helper: **{rk['vs_true']:.1f}x** the /bin/true floor (target ≤ 2x), "
        f"**{speedup:.1f}x** faster than ecr-login warm (target ≥ 3x); "
        f"ecr-login made {meta['ecr_login_ecr_calls_while_timed']} ECR calls while timed")
    summary["targets"]["helper_within_2x_floor"] = {"ratio": rk["vs_true"], "met": rk["vs_true"] <= 2.0}
    summary["targets"]["helper_3x_faster_than_ecr_login"] = {"speedup": speedup, "met": speedup >= 3.0}
    out("")
with open(results_path, "w") as f:
    json.dump({"meta": meta, "summary": summary, "rest_runs": rest, "helper_runs": helper}, f, indent=2)
print("\n".join(lines))
print(f"Results JSON: {results_path}", file=sys.stderr)
EOF

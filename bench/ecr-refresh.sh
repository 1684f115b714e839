#!/usr/bin/env bash
# ECR refresh benchmark: one background-refresh cycle of 10,000 ECR credentials over
# 100 AWS identities in regkeeper, beside a plain aws-sdk-ecr client making the same
# GetAuthorizationToken calls, all against one moto_server. See bench/README.md.
#
#   bench/ecr-refresh.sh [REPETITIONS]      # default 3; the table shows medians
#
# Environment:
#   CREDENTIALS  (default 10000)   IDENTITIES (default 100)
#   INITIAL      login (default) | resolve — how the initial cycle uses each credential
#                (resolve reads the whole workspace per call: quadratic, ~40 min at 10,000)
#   RESOLVE_SAMPLE  resolves timed after the cycle, to show one resolve's cost (default 20)
#   KEEP_JSON    a file to which every run's raw JSON line is appended
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REPETITIONS=${1:-3}
CREDENTIALS=${CREDENTIALS:-10000}
IDENTITIES=${IDENTITIES:-100}
INITIAL=${INITIAL:-login}
RESOLVE_SAMPLE=${RESOLVE_SAMPLE:-20}
# Share the main target directory: the dependencies are built once.
export CARGO_TARGET_DIR="$ROOT/target"
BENCH="$CARGO_TARGET_DIR/release/ecr-refresh-bench"
MOTO="$ROOT/.venv-test/bin/moto_server"

say() { printf '==> %s\n' "$*" >&2; }

if [[ ! -x "$MOTO" ]]; then
    say "no $MOTO: running scripts/test --setup-only"
    scripts/test --setup-only
fi

say "building bench/ecr-refresh (release)"
cargo build --release --manifest-path bench/ecr-refresh/Cargo.toml >&2

WORK=$(mktemp -d)
MOTO_PID=
RELAY_PID=
cleanup() {
    for pid in $RELAY_PID $MOTO_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# moto_server on a free port, with no AWS_* settings of the caller (as the tests do).
env -i PATH="$PATH" HOME="$WORK" PYTHONUNBUFFERED=1 \
    "$MOTO" -H 127.0.0.1 -p 0 >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
ENDPOINT=
for _ in $(seq 1 300); do
    ENDPOINT=$(grep -o 'Running on http://[0-9.:]*' "$WORK/moto.log" | head -n1 | sed 's/Running on //' || true)
    [[ -n "$ENDPOINT" ]] && break
    kill -0 "$MOTO_PID" 2>/dev/null || { cat "$WORK/moto.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$ENDPOINT" ]] || { cat "$WORK/moto.log" >&2; echo "moto_server did not start" >&2; exit 1; }
curl -fsS "$ENDPOINT/moto-api/" >/dev/null
say "moto_server at $ENDPOINT ($("$ROOT/.venv-test/bin/python" -c 'import moto; print("moto", moto.__version__)'))"

# The counting relay in front of moto, a process of its own so that its threads are
# charged to neither side; every run reads its counts from the control port.
"$BENCH" relay --target "$ENDPOINT" >"$WORK/relay.json" &
RELAY_PID=$!
for _ in $(seq 1 100); do
    [[ -s "$WORK/relay.json" ]] && break
    sleep 0.1
done
RELAY=$(jq -r .endpoint "$WORK/relay.json")
COUNTER=$(jq -r .control "$WORK/relay.json")
say "counting relay at $RELAY (counts on $COUNTER)"

run() { # NAME ARGS... — one fresh process; its JSON line goes to $WORK/NAME.jsonl
    local name=$1
    shift
    "$BENCH" "$@" --endpoint "$RELAY" --counter "$COUNTER" >>"$WORK/$name.jsonl"
    tail -n1 "$WORK/$name.jsonl" >&2
}

# Warm moto (its first ECR request imports the backend) before anything is timed.
"$BENCH" plain --endpoint "$RELAY" --counter "$COUNTER" --calls 8 --concurrency 8 --identities 8 >/dev/null

for repetition in $(seq 1 "$REPETITIONS"); do
    say "repetition $repetition/$REPETITIONS"
    run regkeeper regkeeper --credentials "$CREDENTIALS" --identities "$IDENTITIES" --initial "$INITIAL" --resolve-sample "$RESOLVE_SAMPLE"
    run plain-100-seq plain --calls "$IDENTITIES" --concurrency 1 --identities "$IDENTITIES"
    run plain-100 plain --calls "$IDENTITIES" --concurrency 8 --identities "$IDENTITIES"
    run plain-naive plain --calls "$CREDENTIALS" --concurrency 8 --identities "$IDENTITIES"
done

if [[ -n "${KEEP_JSON:-}" ]]; then
    for name in regkeeper plain-100-seq plain-100 plain-naive; do
        sed "s/^/{\"run\":\"$name\",\"line\":/; s/\$/}/" "$WORK/$name.jsonl"
    done >>"$KEEP_JSON"
fi

python3 - "$WORK" "$REPETITIONS" "$(nproc)" <<'EOF'
import json, statistics, sys
work, repetitions, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(name):
    with open(f"{work}/{name}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
med = statistics.median
def mib(kib):
    return f"{kib / 1024:.0f} MiB"
def ms(value):
    return f"{value:,.0f} ms"
rk, seq, p100, naive = (load(n) for n in ("regkeeper", "plain-100-seq", "plain-100", "plain-naive"))
first = rk[0]
n, ids, conc = first["credentials"], first["identities"], first["concurrency"]
rk_calls = med([r["refresh_calls"]["get_authorization_token"] for r in rk])
rk_ms = med([r["refresh_ms"] for r in rk])
rk_cpu = med([r["refresh_cpu_ms"] for r in rk])
rk_peak = med([r["peak_rss_kib"] for r in rk])
def plain(rows):
    return (med([r["calls"]["get_authorization_token"] for r in rows]), med([r["calls_ms"] for r in rows]),
            med([r["calls_cpu_ms"] for r in rows]), med([r["peak_rss_kib"] for r in rows]))
s_calls, s_ms, s_cpu, s_peak = plain(seq)
p_calls, p_ms, p_cpu, p_peak = plain(p100)
n_calls, n_ms, n_cpu, n_peak = plain(naive)
print(f"Median of {repetitions} runs each, {cores} cores, one moto_server on loopback behind a counting relay process.\n")
print("| run | provider calls | wall time | CPU time | peak RSS |")
print("|---|---:|---:|---:|---:|")
print(f"| regkeeper: one refresh cycle, {n:,} creds / {ids} identities, conc {conc} | {rk_calls:,.0f} | {ms(rk_ms)} | {ms(rk_cpu)} | {mib(rk_peak)} |")
print(f"| plain aws-sdk-ecr: {s_calls:,.0f} calls, sequential | {s_calls:,.0f} | {ms(s_ms)} | {ms(s_cpu)} | {mib(s_peak)} |")
print(f"| plain aws-sdk-ecr: {p_calls:,.0f} calls, conc 8 | {p_calls:,.0f} | {ms(p_ms)} | {ms(p_cpu)} | {mib(p_peak)} |")
print(f"| plain aws-sdk-ecr: {n_calls:,.0f} calls (naive, one per credential), conc 8 | {n_calls:,.0f} | {ms(n_ms)} | {ms(n_cpu)} | {mib(n_peak)} |")
print()
print(f"- regkeeper refresh / plain {p_calls:,.0f} calls conc 8: wall **{rk_ms / p_ms:.2f}x**, CPU {rk_cpu / p_cpu:.2f}x")
print(f"- vs naive per-credential refresh: {n_calls - rk_calls:,.0f} of {n_calls:,.0f} calls saved "
      f"(**{n_calls / rk_calls:.0f}x fewer**), wall **{n_ms / rk_ms:.0f}x** shorter")
rep = first["refresh_report"]
print(f"- regkeeper cycle detail: {first['refresh_cycles']} refresh_cycle calls (batch {first['cycle_batch']}); "
      f"{rep['deferred_by_rate_limit']} tokens deferred by the provider rate limit (burst 50, 10/s), so the "
      f"manual clock advanced {first['refresher_clock_ms'] / 1000:.0f} s (one refresher interval) between cycles; "
      f"peak RSS of the refresh phase alone {mib(med([r['refresh_peak_rss_kib'] or 0 for r in rk]))}")
init_calls = med([r["initial_calls"]["get_authorization_token"] for r in rk])
print(f"- regkeeper whole run {med([r['whole_ms'] for r in rk]) / 1000:,.1f} s: create {n:,} credentials "
      f"{med([r['create_ms'] for r in rk]) / 1000:,.1f} s, initial cycle ({first['initial_by']}, {init_calls:,.0f} calls) "
      f"{med([r['initial_ms'] for r in rk]) / 1000:,.1f} s, refresh {rk_ms / 1000:,.1f} s")
samples = [r["resolve_sample"] for r in rk if r.get("resolve_sample")]
if samples:
    print(f"- one resolve with {n:,} credentials in the workspace (cached token, 0 provider calls): "
          f"{med([x['ms_per_resolve'] for x in samples]):,.0f} ms, peak RSS "
          f"{mib(med([x['peak_rss_kib'] or 0 for x in samples]))} (median over {samples[0]['resolves']} resolves x {len(samples)} runs)")
EOF

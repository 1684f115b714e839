#!/usr/bin/env python3
"""The markdown tables and the JSON results of bench/consumers.sh.

    report.py WORK_DIR RESULTS_JSON

Reads WORK_DIR/rest.jsonl (one line per wrk run), helper.jsonl (one line per hyperfine
command and round) and stuck.jsonl (servers restarted because their writes were stuck),
plus the run's settings from BENCH_* environment variables. Prints the tables on
standard output and writes every figure and raw run to RESULTS_JSON.
"""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ENDPOINT_LABELS = {
    "healthz": "GET /healthz (floor)",
    "me": "GET /api/v1/me (trivial, authenticated)",
    "show": "GET one credential (diagnostic: no audit, no secret)",
    "resolve-docker": "POST resolve, docker, the same image each time",
    "resolve-distinct": "POST resolve, docker, a new image each time (best-match query runs)",
    "resolve-ecr": "POST resolve, ECR credential, warm token",
}
HELPER_LABELS = {
    "true": "`/bin/true` (floor)",
    "ecr-login": "`docker-credential-ecr-login get`, warm cache",
    "regkeeper": "`docker-credential-regkeeper get`, warm token",
    "regkeeper-version": "`docker-credential-regkeeper version` (diagnostic: start-up, no request)",
    "bare-client": "bare client: the same resolve from a new process, no libraries (diagnostic: the floor of `get`)",
}


def load(work: str, name: str) -> list[dict]:
    with open(f"{work}/{name}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def first_line(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return None
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else ""


def environment_json(name: str):
    value = os.environ.get(name, "null")
    return json.loads(value) if value else None


def main() -> None:
    work, results_path = sys.argv[1], sys.argv[2]
    env = os.environ
    rest, helper, stuck = load(work, "rest"), load(work, "helper"), load(work, "stuck")
    med = statistics.median
    root = env["BENCH_ROOT"]
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                         if line.startswith("model name")), None),
        },
        "commit": first_line(["git", "-C", root, "rev-parse", "--short", "HEAD"]),
        "tree_dirty": bool(first_line(["git", "-C", root, "status", "--porcelain"])),
        "rounds": int(env["BENCH_ROUNDS"]),
        "wrk": {"duration_s": int(env["BENCH_DURATION"]), "connections": int(env["BENCH_CONNECTIONS"]),
                "threads": int(env["BENCH_THREADS"])},
        "helper_runs_per_round": int(env["BENCH_HELPER_RUNS"]),
        "credentials": {"small": int(env["BENCH_SMALL"]), "large": int(env["BENCH_LARGE"])},
        "resolve_path": env["BENCH_RESOLVE_PATH"],
        "seeding": {"small": environment_json("BENCH_SEED_SMALL"), "large": environment_json("BENCH_SEED_LARGE")},
        "versions": {
            "wrk": first_line(["wrk", "-v"]),
            "hyperfine": first_line([env.get("BENCH_HYPERFINE", "hyperfine"), "--version"]),
            "amazon-ecr-credential-helper": first_line(
                ["dpkg-query", "-W", "-f", "${Version}", "amazon-ecr-credential-helper"]),
            "moto": env["BENCH_MOTO"],
        },
        "ecr_login_ecr_calls_while_timed": int(env["BENCH_ECR_LOGIN_CALLS"]),
        "moto_server_requests_total": int(env["BENCH_MOTO_CALLS"]),
        "servers_restarted_because_writes_were_stuck": len(stuck),
        "context_switches_from": "perf stat" if env.get("BENCH_PERF") == "1" else "/proc/PID/task/*/status",
    }
    summary: dict = {"rest": {}, "helper": {}, "targets": {}}
    lines: list[str] = []
    out = lines.append

    if rest:
        wrk = meta["wrk"]
        out(f"REST: wrk -t{wrk['threads']} -c{wrk['connections']} -d{wrk['duration_s']}s per run, median of "
            f"{meta['rounds']} rounds; resolve is `POST {meta['resolve_path']}`; wrk and the server share the "
            f"machine's {meta['machine']['cores']} cores.\n")
        out("| credentials | endpoint | req/s | p50 | p99 | vs /healthz | vs /api/v1/me | server CPU / req "
            "| server context switches / req | failed |")
        out("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for server in ("small", "large"):
            figures = {}
            for endpoint in ENDPOINT_LABELS:
                rows = [r for r in rest if r["server"] == server and r["endpoint"] == endpoint]
                if not rows:
                    continue
                figures[endpoint] = {
                    "rps": med(r["rps"] for r in rows),
                    "p50_ms": med(r["p50_us"] for r in rows) / 1000,
                    "p99_ms": med(r["p99_us"] for r in rows) / 1000,
                    "server_cpu_us_per_request": med(r["server_cpu_s"] / max(r["requests"], 1) * 1e6 for r in rows),
                    "server_context_switches_per_request": med(
                        r["server_context_switches"] / max(r["requests"], 1) for r in rows),
                    "failed_requests": sum(r["non_2xx_3xx"] + r["socket_errors"] for r in rows),
                    "rps_per_round": [r["rps"] for r in rows],
                    "load1_per_round": [r["load1"] for r in rows],
                }
            if not figures:
                continue
            for endpoint, f in figures.items():
                f["vs_healthz"] = f["rps"] / figures["healthz"]["rps"] if "healthz" in figures else None
                f["vs_me"] = f["rps"] / figures["me"]["rps"] if "me" in figures else None
                out(f"| {meta['credentials'][server]:,} | {ENDPOINT_LABELS[endpoint]} | {f['rps']:,.0f} "
                    f"| {f['p50_ms']:.2f} ms | {f['p99_ms']:.1f} ms | {f['vs_healthz']:.3f}x | {f['vs_me']:.3f}x "
                    f"| {f['server_cpu_us_per_request']:,.0f} µs | {f['server_context_switches_per_request']:.1f} "
                    f"| {f['failed_requests']} |")
            summary["rest"][server] = figures
        out("")
        small, large = summary["rest"].get("small", {}), summary["rest"].get("large", {})
        few, many = f"{meta['credentials']['small']:,}", f"{meta['credentials']['large']:,}"
        half = {}
        for endpoint in ("resolve-docker", "resolve-distinct"):
            if endpoint in small and small[endpoint]["vs_me"] is not None:
                r = small[endpoint]
                half[endpoint] = {"vs_me": r["vs_me"], "vs_healthz": r["vs_healthz"],
                                  "met_vs_me": r["vs_me"] >= 0.5, "met_vs_healthz": r["vs_healthz"] >= 0.5}
                out(f"- Target \"resolve ≥ 50% of the trivial endpoint\" ({few} credentials, {endpoint}): "
                    f"{r['vs_me']:.3f}x `/api/v1/me` ({'met' if r['vs_me'] >= 0.5 else 'missed'}), "
                    f"{r['vs_healthz']:.3f}x `/healthz` ({'met' if r['vs_healthz'] >= 0.5 else 'missed'}).")
        summary["targets"]["resolve_at_least_half_the_trivial_rate"] = half
        scale = {}
        for endpoint in large:
            if endpoint in small:
                large[endpoint]["vs_small"] = large[endpoint]["rps"] / small[endpoint]["rps"]
        for endpoint in ("resolve-distinct", "resolve-docker"):
            if "vs_small" in large.get(endpoint, {}):
                ratio = large[endpoint]["vs_small"]
                scale[endpoint] = {"ratio": ratio, "met": ratio >= 0.9}
                out(f"- Target \"{many} credentials within 10% of {few}\" ({endpoint}): {ratio:.3f}x the rate "
                    f"({'met' if ratio >= 0.9 else 'missed'}).")
        if scale:
            others = ", ".join(f"{e} {large[e]['vs_small']:.2f}x" for e in large
                               if e not in scale and "vs_small" in large[e])
            out(f"- {many} against {few} credentials, other rows: {others}.")
        summary["targets"]["resolve_with_100k_within_10pct_of_10"] = scale
        loads = [r["load1"] for r in rest]
        others = [max(0.0, (r["machine_busy_s"] - r["server_cpu_s"]) / r["seconds"]) for r in rest]
        attempts = sum(r.get("attempts", 1) - 1 for r in rest)
        out(f"- Load average (1 min) at the start of the wrk runs: {min(loads):.2f} to {max(loads):.2f}; CPU "
            f"used by everything but the server during a run (wrk included): {min(others):.2f} to {max(others):.2f} "
            f"of {meta['machine']['cores']} cores.")
        out(f"- Servers restarted because their database writes were stuck after a run: {len(stuck)}; "
            f"wrk runs repeated because of it: {attempts}.")
        out("")

    if helper:
        out(f"Credential helpers: `get` for `{env['BENCH_ECR_HOST']}`, hyperfine "
            f"-N --input (no shell; every command gets the server URL on stdin), {meta['helper_runs_per_round']} runs "
            f"per command and round, median over "
            f"{meta['rounds']} rounds.\n")
        out("| command | mean | median | user | system | vs /bin/true | vs ecr-login |")
        out("|---|---:|---:|---:|---:|---:|---:|")
        figures = {}
        for command in HELPER_LABELS:
            rows = [r for r in helper if r["command"] == command]
            if rows:
                figures[command] = {
                    "mean_ms": med(r["mean_s"] for r in rows) * 1e3,
                    "median_ms": med(r["median_s"] for r in rows) * 1e3,
                    "user_ms": med(r["user_s"] for r in rows) * 1e3,
                    "system_ms": med(r["system_s"] for r in rows) * 1e3,
                    "mean_ms_per_round": [r["mean_s"] * 1e3 for r in rows],
                    "load1_per_round": [r["load1"] for r in rows],
                }
        floor, peer = figures["true"]["mean_ms"], figures["ecr-login"]["mean_ms"]
        for command, f in figures.items():
            f["vs_true"] = f["mean_ms"] / floor
            f["vs_ecr_login"] = f["mean_ms"] / peer
            out(f"| {HELPER_LABELS[command]} | {f['mean_ms']:.2f} ms | {f['median_ms']:.2f} ms | {f['user_ms']:.2f} ms "
                f"| {f['system_ms']:.2f} ms | {f['vs_true']:.1f}x | {f['vs_ecr_login']:.2f}x |")
        summary["helper"] = figures
        rk = figures["regkeeper"]
        speedup = peer / rk["mean_ms"]
        within = rk["vs_true"] <= 2.0
        summary["targets"]["helper_within_2x_of_bin_true"] = {"ratio": rk["vs_true"], "met": within}
        summary["targets"]["helper_3x_faster_than_ecr_login"] = {"speedup": speedup, "met": speedup >= 3.0}
        out("")
        out(f"- Target \"within 2x of /bin/true\": {rk['vs_true']:.1f}x ({'met' if within else 'missed'}).")
        out(f"- Target \"at least 3x faster than ecr-login warm\": {speedup:.2f}x ({'met' if speedup >= 3 else 'missed'}).")
        loads = [r["load1"] for r in helper]
        out(f"- ecr-login called ECR {meta['ecr_login_ecr_calls_while_timed']} times while timed (its log); "
            f"load average at the start of the rounds: {min(loads):.2f} to {max(loads):.2f}.")
        out("")

    with open(results_path, "w") as f:
        json.dump({"meta": meta, "summary": summary, "stuck_servers": stuck, "rest_runs": rest,
                   "helper_runs": helper}, f, indent=2)
    print("\n".join(lines))
    print(f"Results JSON: {results_path}", file=sys.stderr)


if __name__ == "__main__":
    main()

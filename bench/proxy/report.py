#!/usr/bin/env python3
"""The markdown tables and the JSON results of bench/proxy.sh.

    report.py WORK_DIR RESULTS_JSON

Reads WORK_DIR/pulls.jsonl (one line per timed pull) and manifests.jsonl (one line per
wrk run), plus the run's settings from BENCH_* environment variables. Prints the tables
on standard output and writes every figure and raw run to RESULTS_JSON.
"""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

PATH_LABELS = {
    "direct": "direct from the upstream",
    "regkeeper-nocache": "regkeeper, no cache",
    "regkeeper-cache": "regkeeper, cache",
    "distribution": "distribution pull-through cache",
}
CLIENT_LABELS = {"curl": "curl (blob GET)", "skopeo": "skopeo copy (whole image to dir:)"}
MIB = 1024 * 1024

# The issue's targets, and the figures it gives for distribution on these machines.
COLD_TARGET = 0.9
WARM_TARGET = 1.0
MANIFEST_TARGET = 0.9
RSS_LIMIT_MIB = 64
# "Flat as blobs grow": the large layer's peak is within this much of the small one's.
FLAT_SLACK_MIB = 4
FLAT_SLACK_RATIO = 0.10


def load(work: str, name: str) -> list[dict]:
    with open(f"{work}/{name}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def first_line(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else ""


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def mib(kib):
    return None if kib is None else kib / 1024


def fmt(value, spec, suffix=""):
    return "—" if value is None else f"{value:{spec}}{suffix}"


def ratio(value, base):
    return None if value is None or not base else value / base


def met(value, target):
    return "—" if value is None else ("met" if value >= target else "missed")


def main() -> None:
    work, results_path = sys.argv[1], sys.argv[2]
    env = os.environ
    pulls, manifests = load(work, "pulls"), load(work, "manifests")
    root = env["BENCH_ROOT"]
    layer_mib, small_mib = int(env["BENCH_LAYER_MIB"]), int(env["BENCH_SMALL_MIB"])
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
        "paths": env["BENCH_PATHS"].split(),
        "parts": env["BENCH_PARTS"].split(),
        "clients": env["BENCH_CLIENTS"].split(),
        "layer_mib": layer_mib,
        "layer_bytes": int(env["BENCH_LAYER_BYTES"]),
        "small_layer_mib": small_mib,
        "small_layer_bytes": int(env["BENCH_SMALL_BYTES"]),
        "wrk": {"duration_s": int(env["BENCH_DURATION"]), "connections": int(env["BENCH_CONNECTIONS"]),
                "threads": int(env["BENCH_THREADS"])},
        "regkeeper_proxy_cache_max_bytes": int(env["BENCH_CACHE_MAX_BYTES"]),
        "registry_log_level": env["BENCH_REGISTRY_LOG_LEVEL"],
        "regkeeper_upstream_path_form": env.get("BENCH_REGKEEPER_PREFIX") or None,
        "token_issuer_requests": int(env["BENCH_ISSUER_REQUESTS"]),
        "versions": {
            "docker-registry": first_line(["/usr/bin/docker-registry", "--version"]),
            "skopeo": first_line(["/usr/bin/skopeo", "--version"]),
            "curl": first_line(["curl", "--version"]),
            "wrk": first_line(["wrk", "-v"]),
            "openssl": first_line(["openssl", "version"]),
            "pyjwt": first_line([env["BENCH_PYTHON"], "-c", "import jwt; print(jwt.__version__)"]),
        },
    }
    if "regkeeper" in meta["paths"]:
        meta["versions"]["regkeeper"] = first_line([env["BENCH_REGKEEPER"], "--version"])
    summary: dict = {"pull": {}, "peak_rss": {}, "manifest": {}, "targets": {}}
    lines: list[str] = []
    out = lines.append
    targets = summary["targets"]

    def pull_rows(path, client, layer, phase):
        return [r for r in pulls if r["path"] == path and r["client"] == client and r["layer"] == layer
                and r["phase"] == phase]

    def pull_figures(rows):
        if not rows:
            return None
        return {
            "mib_per_s": med(r["mib_per_s"] for r in rows),
            "seconds": med(r["seconds"] for r in rows),
            "proxy_peak_rss_mib": mib(med(r["proxy_peak_rss_kib"] for r in rows)),
            "proxy_peak_rss_mib_max": mib(max((r["proxy_peak_rss_kib"] or 0) for r in rows)) or None,
            "proxy_cpu_s_per_gib": med(r["proxy_cpu_s"] / (r["bytes"] / MIB / 1024) for r in rows)
            if rows[0]["proxy_peak_rss_kib"] is not None else None,
            "upstream_cpu_s_per_gib": med(r["upstream_cpu_s"] / (r["bytes"] / MIB / 1024) for r in rows),
            "token_requests": med(r["token_requests"] for r in rows),
            # How many times the upstream sent the blob (TLS framing adds well under 1%).
            "upstream_sends": med(r["upstream_bytes_written"] / r["bytes"] for r in rows),
            "mib_per_s_per_round": [r["mib_per_s"] for r in rows],
            "load1_per_round": [r["load1"] for r in rows],
        }

    if pulls:
        out(f"Pulls: one layer of {layer_mib} MiB of random data ({meta['layer_bytes']:,} bytes), MiB/s = bytes "
            f"received / wall time of the client, median of {meta['rounds']} rounds. Cold: the proxy has not seen "
            f"the blob (regkeeper without a cache, or with an empty one; distribution with empty storage); warm: "
            f"the same proxy's second pull. The direct pull has no cache, so its one figure is the baseline of "
            f"both columns.\n")
        out("| client | path | cold MiB/s | cold vs direct | warm MiB/s | warm vs direct | proxy peak RSS cold / warm "
            "| proxy CPU s/GiB cold / warm | upstream sent / blob cold / warm |")
        out("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for client in meta["clients"]:
            direct = pull_figures(pull_rows("direct", client, "big", "direct"))
            base = direct["mib_per_s"] if direct else None
            summary["pull"][client] = {"direct": direct}
            if direct:
                out(f"| {CLIENT_LABELS[client]} | {PATH_LABELS['direct']} | {base:,.0f} | 1.00x | {base:,.0f} "
                    f"| 1.00x | — | — | {direct['upstream_sends']:.2f} |")
            for path in ("regkeeper-nocache", "regkeeper-cache", "distribution"):
                cold = pull_figures(pull_rows(path, client, "big", "cold"))
                warm = pull_figures(pull_rows(path, client, "big", "warm"))
                if not cold and not warm:
                    continue
                for figures in (cold, warm):
                    if figures:
                        figures["vs_direct"] = ratio(figures["mib_per_s"], base)
                summary["pull"][client][path] = {"cold": cold, "warm": warm}
                c, w = cold or {}, warm or {}
                out(f"| {CLIENT_LABELS[client]} | {PATH_LABELS[path]} | {fmt(c.get('mib_per_s'), ',.0f')} "
                    f"| {fmt(c.get('vs_direct'), '.2f', 'x')} | {fmt(w.get('mib_per_s'), ',.0f')} "
                    f"| {fmt(w.get('vs_direct'), '.2f', 'x')} "
                    f"| {fmt(c.get('proxy_peak_rss_mib'), '.1f')} / {fmt(w.get('proxy_peak_rss_mib'), '.1f')} MiB "
                    f"| {fmt(c.get('proxy_cpu_s_per_gib'), '.2f')} / {fmt(w.get('proxy_cpu_s_per_gib'), '.2f')} "
                    f"| {fmt(c.get('upstream_sends'), '.2f')} / {fmt(w.get('upstream_sends'), '.2f')} |")
        out("")

        # Peak RSS of each proxy per pull (VmHWM reset before every pull), the small layer
        # against the large one, with curl.
        if small_mib > 0:
            out(f"Proxy peak RSS per pull (VmHWM, reset before each pull), curl, {small_mib} MiB layer against "
                f"{layer_mib} MiB layer; median of {meta['rounds']} rounds (max in brackets).\n")
            out(f"| path | pull | {small_mib} MiB layer | {layer_mib} MiB layer | growth |")
            out("|---|---|---:|---:|---:|")
            for path, phase in (("regkeeper-nocache", "cold"), ("regkeeper-cache", "cold"),
                                ("regkeeper-cache", "warm"), ("distribution", "cold"), ("distribution", "warm")):
                small = pull_figures(pull_rows(path, "curl", "small", phase))
                big = pull_figures(pull_rows(path, "curl", "big", phase))
                if not small or not big:
                    continue
                growth = big["proxy_peak_rss_mib"] - small["proxy_peak_rss_mib"]
                summary["peak_rss"][f"{path}/{phase}"] = {
                    "small_mib": small["proxy_peak_rss_mib"], "big_mib": big["proxy_peak_rss_mib"],
                    "small_max_mib": small["proxy_peak_rss_mib_max"], "big_max_mib": big["proxy_peak_rss_mib_max"],
                    "growth_mib": growth}
                out(f"| {PATH_LABELS[path]} | {phase} | {small['proxy_peak_rss_mib']:.1f} MiB "
                    f"({small['proxy_peak_rss_mib_max']:.1f}) | {big['proxy_peak_rss_mib']:.1f} MiB "
                    f"({big['proxy_peak_rss_mib_max']:.1f}) | {growth:+.1f} MiB |")
            out("")

        for client in meta["clients"]:
            figures = summary["pull"].get(client, {})
            for path, label in (("regkeeper-nocache", "no cache"), ("regkeeper-cache", "empty cache")):
                cold = (figures.get(path) or {}).get("cold")
                if cold:
                    targets[f"cold_{client}_{path}"] = {"ratio": cold["vs_direct"], "target": COLD_TARGET,
                                                        "met": cold["vs_direct"] is not None
                                                        and cold["vs_direct"] >= COLD_TARGET}
                    out(f"- Target \"cold through regkeeper ≥ {COLD_TARGET}x direct\" ({client}, {label}): "
                        f"{fmt(cold['vs_direct'], '.2f', 'x')} ({met(cold['vs_direct'], COLD_TARGET)}).")
            warm = (figures.get("regkeeper-cache") or {}).get("warm")
            if warm:
                targets[f"warm_{client}"] = {"ratio": warm["vs_direct"], "target": WARM_TARGET,
                                             "met": warm["vs_direct"] is not None and warm["vs_direct"] >= WARM_TARGET}
                out(f"- Target \"warm with the cache ≥ direct\" ({client}): {fmt(warm['vs_direct'], '.2f', 'x')} "
                    f"({met(warm['vs_direct'], WARM_TARGET)}).")
            dist = figures.get("distribution") or {}
            if dist.get("cold"):
                out(f"- distribution for reference ({client}): cold {fmt(dist['cold']['vs_direct'], '.2f', 'x')} "
                    f"(the issue: about 0.25x), warm {fmt((dist.get('warm') or {}).get('vs_direct'), '.2f', 'x')}.")
        rk_peaks = [r["proxy_peak_rss_kib"] for r in pulls if r["path"].startswith("regkeeper")]
        if rk_peaks:
            highest = max(rk_peaks) / 1024
            targets["peak_rss_under_64_mib"] = {"max_mib": highest, "limit_mib": RSS_LIMIT_MIB,
                                                "met": highest < RSS_LIMIT_MIB}
            out(f"- Target \"proxy peak RSS under {RSS_LIMIT_MIB} MiB\": highest over every regkeeper pull "
                f"{highest:.1f} MiB ({'met' if highest < RSS_LIMIT_MIB else 'missed'}).")
            flat = {k: v for k, v in summary["peak_rss"].items() if k.startswith("regkeeper")}
            if flat:
                ok = all(v["growth_mib"] <= max(FLAT_SLACK_MIB, FLAT_SLACK_RATIO * v["small_mib"])
                         for v in flat.values())
                worst = max(v["growth_mib"] for v in flat.values())
                targets["peak_rss_flat"] = {"largest_growth_mib": worst, "met": ok}
                out(f"- Target \"peak RSS flat as blobs grow\" ({small_mib} → {layer_mib} MiB): largest growth "
                    f"{worst:+.1f} MiB ({'met' if ok else 'missed'}; flat = within {FLAT_SLACK_MIB} MiB or "
                    f"{FLAT_SLACK_RATIO:.0%}).")
        loads = [r["load1"] for r in pulls]
        out(f"- Load average (1 min) at the end of the pulls: {min(loads):.2f} to {max(loads):.2f}.")
        out("")

    if manifests:
        wrk = meta["wrk"]
        out(f"Manifest requests: `GET /v2/<name>/manifests/<tag or digest>` of the {layer_mib} MiB image with the "
            f"manifest media types in Accept, wrk -t{wrk['threads']} -c{wrk['connections']} -d{wrk['duration_s']}s, "
            f"median of {meta['rounds']} rounds; direct with a bearer token, regkeeper with Basic auth (an API "
            f"token), distribution anonymous. CPU per request is the process's user + system time over the run.\n")
        out("| path | by | req/s | vs direct | p50 | p99 | proxy CPU / req | upstream CPU / req "
            "| upstream tokens / 1k req | proxy peak RSS | failed |")
        out("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for by in ("tag", "digest"):
            base = None
            for path in PATH_LABELS:
                rows = [r for r in manifests if r["path"] == path and r["by"] == by]
                if not rows:
                    continue
                f = {
                    "rps": med(r["rps"] for r in rows),
                    "p50_ms": med(r["p50_us"] for r in rows) / 1000,
                    "p99_ms": med(r["p99_us"] for r in rows) / 1000,
                    "proxy_cpu_us_per_request": med(r["proxy_cpu_s"] / max(r["requests"], 1) * 1e6 for r in rows)
                    if path != "direct" else None,
                    "upstream_cpu_us_per_request": med(r["upstream_cpu_s"] / max(r["requests"], 1) * 1e6
                                                       for r in rows),
                    "token_requests_per_1k": med(r["token_requests"] / max(r["requests"], 1) * 1000 for r in rows),
                    "proxy_peak_rss_mib": mib(med(r["proxy_peak_rss_kib"] for r in rows)),
                    "failed_requests": sum(r["non_2xx_3xx"] + r["socket_errors"] for r in rows),
                    "rps_per_round": [r["rps"] for r in rows],
                }
                if path == "direct":
                    base = f["rps"]
                f["vs_direct"] = ratio(f["rps"], base)
                summary["manifest"].setdefault(by, {})[path] = f
                out(f"| {PATH_LABELS[path]} | {by} | {f['rps']:,.0f} | {fmt(f['vs_direct'], '.2f', 'x')} "
                    f"| {f['p50_ms']:.2f} ms | {f['p99_ms']:.1f} ms "
                    f"| {fmt(f['proxy_cpu_us_per_request'], ',.0f', ' µs')} "
                    f"| {fmt(f['upstream_cpu_us_per_request'], ',.0f', ' µs')} | {f['token_requests_per_1k']:,.1f} "
                    f"| {fmt(f['proxy_peak_rss_mib'], '.1f', ' MiB')} | {f['failed_requests']} |")
        out("")
        for by, paths in summary["manifest"].items():
            for path in ("regkeeper-nocache", "regkeeper-cache"):
                if path in paths:
                    r = paths[path]["vs_direct"]
                    targets[f"manifest_{by}_{path}"] = {"ratio": r, "target": MANIFEST_TARGET,
                                                        "met": r is not None and r >= MANIFEST_TARGET}
                    out(f"- Target \"manifest rate ≥ {MANIFEST_TARGET}x direct\" (by {by}, {PATH_LABELS[path]}): "
                        f"{fmt(r, '.2f', 'x')} ({met(r, MANIFEST_TARGET)}).")
            if "distribution" in paths:
                out(f"- distribution for reference (by {by}): {fmt(paths['distribution']['vs_direct'], '.2f', 'x')} "
                    f"(the issue: about 0.3x).")
        out("")
    out(f"- Token issuer requests in the whole run (set-up included): {meta['token_issuer_requests']}.")

    with open(results_path, "w") as f:
        json.dump({"meta": meta, "summary": summary, "pull_runs": pulls, "manifest_runs": manifests}, f, indent=2)
    print("\n".join(lines))
    print(f"Results JSON: {results_path}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Merges the results of every benchmark into one JSON file and prints one markdown table.

    report_all.py STATUS_JSONL ALL_JSON

STATUS_JSONL is written by bench/run: one line per step (build, then each benchmark) with
its status (ok, failed, skipped), exit code, seconds, its results file, its own markdown
tables and its log. The results files are the ones each script writes:

- ecr-refresh: the KEEP_JSON lines of bench/ecr-refresh.sh, {"run": MODE, "line": {...}};
  the medians are taken here, as the script's own table does.
- consumers, proxy: the RESULTS file of bench/consumers.sh and bench/proxy.sh
  ({"meta", "summary", ...}; see their report.py).
- any other (replicas-load): its RESULTS file. If it holds "rows" (a list of objects with
  measurement, regkeeper, peer, ratio, target, met), those are the rows; else every
  entry of summary.targets with a ratio or a met becomes one.

Every row compares regkeeper with its peer: ratio = regkeeper / peer, and the target is
stated on that ratio (or on regkeeper's own figure where it has no peer).

Writes ALL_JSON (date, git commit, machine, every step's status, every row, and each
benchmark's meta and summary) and prints the table on standard output. The run's settings
come from BENCH_* environment variables (bench/run sets them); without them, it still
works on the files it is given.
"""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

MIB = 1024


def first_line(command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else ""


def machine():
    def cpuinfo(key):
        try:
            with open("/proc/cpuinfo") as f:
                return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), None)
        except OSError:
            return None

    ram = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cores": int(first_line(["nproc"]) or os.cpu_count() or 0),
        "cpu": cpuinfo("model name"),
        "ram_gib": round(ram, 1) if ram else None,
        "kernel": platform.release(),
        "hostname": platform.node(),
    }


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def div(a, b):
    return None if a is None or not b else a / b


def x(value):
    return "—" if value is None else (f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x")


def num(value, spec=",.0f", unit=""):
    return "—" if value is None else f"{value:{spec}}{unit}"


class Rows:
    def __init__(self, bench):
        self.bench = bench
        self.rows = []

    def add(self, measurement, regkeeper, peer, ratio, target="—", met=None):
        """regkeeper and peer are display strings; ratio a float (regkeeper / peer) or
        None; met True/False for a target, None for a figure shown for information."""
        self.rows.append({
            "benchmark": self.bench, "measurement": measurement, "regkeeper": regkeeper, "peer": peer,
            "ratio": ratio, "target": target,
            "result": "—" if met is None else ("met" if met else "missed"),
        })


# --- ecr-refresh ------------------------------------------------------------------------


def ecr_refresh(path, rows):
    runs = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                runs.setdefault(item["run"], []).append(item["line"])
    rk, p100, naive = runs["regkeeper"], runs.get("plain-100", []), runs.get("plain-naive", [])
    first = rk[0]
    n, ids = first["credentials"], first["identities"]
    rk_calls = med(r["refresh_calls"]["get_authorization_token"] for r in rk)
    refreshed = med(r["refresh_report"]["refreshed"] for r in rk)
    failed = max(r["refresh_report"]["failed"] + r["refresh_report"]["dropped"] for r in rk)
    naive_calls = med(r["calls"]["get_authorization_token"] for r in naive)
    per_id = rk_calls / ids
    summary = {"credentials": n, "identities": ids, "repetitions": len(rk), "refresh_calls": rk_calls,
               "refreshed": refreshed, "failed_or_dropped": failed, "naive_calls": naive_calls,
               "refresh_ms": med(r["refresh_ms"] for r in rk), "refresh_cpu_ms": med(r["refresh_cpu_ms"] for r in rk),
               "peak_rss_kib": med(r["peak_rss_kib"] for r in rk),
               "plain_100_ms": med(r["calls_ms"] for r in p100), "plain_100_cpu_ms": med(r["calls_cpu_ms"] for r in p100),
               "plain_100_peak_rss_kib": med(r["peak_rss_kib"] for r in p100),
               "naive_ms": med(r["calls_ms"] for r in naive)}
    rows.add(f"GetAuthorizationToken calls in one refresh cycle, {n:,} creds over {ids} identities",
             f"{rk_calls:,.0f} ({per_id:.2f} / identity)",
             f"plain SDK, one call per credential: {num(naive_calls)}" if naive_calls else "—",
             div(rk_calls, naive_calls), "1 call / identity",
             per_id == 1 and refreshed == ids and failed == 0)
    if p100:
        for label, key, peer_key, unit in (("refresh wall time", "refresh_ms", "plain_100_ms", " ms"),
                                           ("refresh CPU time", "refresh_cpu_ms", "plain_100_cpu_ms", " ms")):
            rows.add(f"{label} vs plain SDK making the same {ids} calls (conc 8)",
                     num(summary[key], unit=unit), f"plain SDK: {num(summary[peer_key], unit=unit)}",
                     div(summary[key], summary[peer_key]))
        rows.add("peak RSS vs plain SDK (whole process)", num(summary["peak_rss_kib"] / MIB, ".0f", " MiB"),
                 f"plain SDK: {num(summary['plain_100_peak_rss_kib'] / MIB, '.0f', ' MiB')}",
                 div(summary["peak_rss_kib"], summary["plain_100_peak_rss_kib"]))
    if naive:
        rows.add(f"refresh wall time vs a per-credential refresher ({num(naive_calls)} calls)",
                 num(summary["refresh_ms"], unit=" ms"), f"plain SDK naive: {num(summary['naive_ms'], unit=' ms')}",
                 div(summary["refresh_ms"], summary["naive_ms"]))
    return {"meta": {"repetitions": len(rk), "credentials": n, "identities": ids}, "summary": summary}


# --- consumers --------------------------------------------------------------------------


def consumers(path, rows):
    with open(path) as f:
        data = json.load(f)
    s, meta = data["summary"], data["meta"]
    helper = s.get("helper") or {}
    if helper:
        rk, true, ecr = helper["regkeeper"], helper["true"], helper["ecr-login"]
        rows.add("`docker-credential-regkeeper get` (warm token) mean latency vs `/bin/true`",
                 f"{rk['mean_ms']:.2f} ms", f"/bin/true: {true['mean_ms']:.2f} ms", rk["mean_ms"] / true["mean_ms"],
                 "≤ 2.0x", rk["mean_ms"] / true["mean_ms"] <= 2.0)
        ratio = rk["mean_ms"] / ecr["mean_ms"]
        rows.add("helper `get` vs `docker-credential-ecr-login get` (warm cache)",
                 f"{rk['mean_ms']:.2f} ms", f"ecr-login: {ecr['mean_ms']:.2f} ms", ratio,
                 "≤ 0.33x (3x faster)", ecr["mean_ms"] / rk["mean_ms"] >= 3.0)
        bare = helper.get("bare-client")
        if bare:
            rows.add("the same resolve from a bare client (a new process, no libraries: the floor of `get`) "
                     "vs `/bin/true`", f"{bare['mean_ms']:.2f} ms", f"/bin/true: {true['mean_ms']:.2f} ms",
                     bare["mean_ms"] / true["mean_ms"], "—", None)
    rest = s.get("rest") or {}
    small, large = rest.get("small", {}), rest.get("large", {})
    few = f"{meta['credentials']['small']:,}"
    many = f"{meta['credentials']['large']:,}"
    rps = lambda f: f"{f['rps']:,.0f} req/s"  # noqa: E731
    checks = (("resolve-docker", "me", "same image", True), ("resolve-docker", "healthz", "same image", True),
              ("resolve-distinct", "me", "new image each time", True), ("resolve-ecr", "me", "ECR, warm token", False))
    for endpoint, floor, label, targeted in checks:
        if endpoint in small and floor in small:
            ratio = small[endpoint]["rps"] / small[floor]["rps"]
            name = "/api/v1/me" if floor == "me" else "/healthz"
            rows.add(f"`POST resolve` rate ({label}, {few} creds) vs `GET {name}`", rps(small[endpoint]),
                     f"{name}: {rps(small[floor])}", ratio, "≥ 0.5x" if targeted else "—",
                     ratio >= 0.5 if targeted else None)
    for endpoint, label, targeted in (("resolve-docker", "same image", True),
                                      ("resolve-distinct", "new image each time", True),
                                      ("resolve-ecr", "ECR, warm token", False)):
        if endpoint in small and endpoint in large:
            ratio = large[endpoint]["rps"] / small[endpoint]["rps"]
            rows.add(f"`POST resolve` rate ({label}) with {many} creds vs with {few}", rps(large[endpoint]),
                     f"{few} creds: {rps(small[endpoint])}", ratio, "≥ 0.9x" if targeted else "—",
                     ratio >= 0.9 if targeted else None)
    return {"meta": meta, "summary": s}


# --- proxy ------------------------------------------------------------------------------


def proxy(path, rows):
    with open(path) as f:
        data = json.load(f)
    s, meta = data["summary"], data["meta"]
    layer = meta["layer_mib"]
    mibs = lambda v: num(v, ",.0f", " MiB/s")  # noqa: E731
    for client, pulls in (s.get("pull") or {}).items():
        direct = (pulls.get("direct") or {}).get("mib_per_s")
        dist = pulls.get("distribution") or {}
        for path_, phase, label, target in (("regkeeper-nocache", "cold", "cold, no cache", 0.9),
                                            ("regkeeper-cache", "cold", "cold, filling the cache", 0.9),
                                            ("regkeeper-cache", "warm", "warm, from the cache", 1.0)):
            figures = (pulls.get(path_) or {}).get(phase)
            if not figures:
                continue
            ratio = figures.get("vs_direct")
            rows.add(f"{client} pull of a {layer} MiB layer, {label}, vs direct", mibs(figures["mib_per_s"]),
                     f"direct: {mibs(direct)}", ratio, f"≥ {target}x", ratio is not None and ratio >= target)
        for phase in ("cold", "warm"):
            mine = (pulls.get("regkeeper-cache") or {}).get(phase)
            theirs = dist.get(phase)
            if mine and theirs:
                rows.add(f"{client} pull, {phase} (cache), vs distribution pull-through cache",
                         mibs(mine["mib_per_s"]), f"distribution: {mibs(theirs['mib_per_s'])}",
                         mine["mib_per_s"] / theirs["mib_per_s"])
    for by, paths in (s.get("manifest") or {}).items():
        direct = (paths.get("direct") or {}).get("rps")
        for path_, label in (("regkeeper-nocache", "no cache"), ("regkeeper-cache", "cache")):
            f = paths.get(path_)
            if f:
                ratio = f.get("vs_direct")
                rows.add(f"manifest GET by {by} ({label}) vs direct", num(f["rps"], unit=" req/s"),
                         f"direct: {num(direct, unit=' req/s')}", ratio, "≥ 0.9x", ratio is not None and ratio >= 0.9)
        mine, theirs = paths.get("regkeeper-cache"), paths.get("distribution")
        if mine and theirs:
            rows.add(f"manifest GET by {by} (cache) vs distribution", num(mine["rps"], unit=" req/s"),
                     f"distribution: {num(theirs['rps'], unit=' req/s')}", mine["rps"] / theirs["rps"])
    targets = s.get("targets") or {}
    peaks = s.get("peak_rss") or {}
    dist_peaks = [v["big_max_mib"] for k, v in peaks.items() if k.startswith("distribution")]
    if "peak_rss_under_64_mib" in targets:
        t = targets["peak_rss_under_64_mib"]
        dist_max = max(dist_peaks) if dist_peaks else None
        rows.add(f"proxy peak RSS, highest over every pull ({layer} MiB layer)", f"{t['max_mib']:.1f} MiB",
                 f"distribution: {num(dist_max, '.1f', ' MiB')}", t["max_mib"] / dist_max if dist_max else None,
                 "< 64 MiB", t["met"])
    if "peak_rss_flat" in targets:
        t = targets["peak_rss_flat"]
        dist_growth = max((v["growth_mib"] for k, v in peaks.items() if k.startswith("distribution")), default=None)
        rows.add(f"proxy peak RSS growth, {meta['small_layer_mib']} → {layer} MiB layer",
                 f"{t['largest_growth_mib']:+.1f} MiB", f"distribution: {num(dist_growth, '+.1f', ' MiB')}", None,
                 "flat (≤ 4 MiB or 10%)", t["met"])
    return {"meta": meta, "summary": s}


# --- replicas-load ----------------------------------------------------------------------


def replicas_load(path, rows):
    with open(path) as f:
        data = json.load(f)
    if "latency_ms" not in data:  # a later shape of its JSON: take its rows or targets
        return generic(path, rows)
    n, replicas, lat = data["requests"], data["replicas"], data["latency_ms"]
    what = f"{n:,} resolves, {data['concurrency']:,} in flight, over {replicas} replicas on one PostgreSQL"
    rows.add(f"{what}: failed requests", f"{data['errors']:,} of {n:,}", "—", None, "0", data["errors"] == 0)
    rows.add(f"{what}: throughput", num(data["throughput_per_second"], unit=" req/s"), "—", None)
    rows.add(f"{what}: latency p50 / p90 / p99",
             " / ".join(num(lat.get(k), ",.0f") for k in ("p50", "p90", "p99")) + " ms", "—", None)
    return {"meta": None, "summary": {k: v for k, v in data.items() if k != "p50_ms_per_replica"}}


# --- any other script -------------------------------------------------------------------


def generic(path, rows):
    with open(path) as f:
        data = json.load(f)
    if isinstance(data.get("rows"), list):
        for r in data["rows"]:
            met = r.get("met")
            rows.add(r.get("measurement", "?"), str(r.get("regkeeper", "—")), str(r.get("peer", "—")),
                     r.get("ratio"), str(r.get("target", "—")), met if isinstance(met, bool) else None)
    else:
        for key, t in ((data.get("summary") or {}).get("targets") or {}).items():
            if not isinstance(t, dict):
                continue
            ratio = t.get("ratio") if isinstance(t.get("ratio"), (int, float)) else None
            figure = next((f"{k} {v:,.4g}" if isinstance(v, (int, float)) else f"{k} {v}"
                           for k, v in t.items() if k not in ("ratio", "met", "target")), "—")
            rows.add(key.replace("_", " "), figure, "—", ratio, str(t.get("target", "—")),
                     t["met"] if isinstance(t.get("met"), bool) else None)
        if not rows.rows:
            rows.add("(no rows or summary.targets in its JSON; see its own tables)", "—", "—", None)
    return {"meta": data.get("meta"), "summary": data.get("summary")}


EXTRACT = {"ecr-refresh": ecr_refresh, "consumers": consumers, "proxy": proxy, "replicas-load": replicas_load}
LABEL = {"ecr-refresh": "ECR refresh", "consumers": "consumers", "proxy": "pull-through proxy",
         "proxy-replicas": "proxy, 3 replicas", "replicas-load": "replicas load"}


def main():
    status_path, all_path = sys.argv[1], sys.argv[2]
    env = os.environ
    root = env.get("BENCH_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(status_path) as f:
        steps = [json.loads(line) for line in f if line.strip()]
    commit = first_line(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    dirty = bool(first_line(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"]))
    meta = {
        "date": env.get("BENCH_STARTED") or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": int(env["BENCH_ELAPSED"]) if env.get("BENCH_ELAPSED") else None,
        "mode": "quick" if env.get("BENCH_QUICK") == "1" else "full",
        "rounds": int(env["BENCH_ROUNDS"]) if env.get("BENCH_ROUNDS") else None,
        "commit": commit,
        "tree_dirty": dirty,
        "machine": machine(),
        "load_before": env.get("BENCH_LOAD_BEFORE"),
        "load_after": env.get("BENCH_LOAD_AFTER"),
    }
    all_rows, benchmarks = [], {}
    for step in steps:
        name = step["name"]
        if name == "build":
            continue
        rows = Rows(LABEL.get(name, name))
        entry = {k: step[k] for k in ("status", "exit", "seconds", "json", "markdown", "log", "rounds", "env")}
        if step["status"] == "ok":
            try:
                entry.update(EXTRACT.get(name, generic)(step["json"], rows))
            except Exception as error:  # a results file this report cannot read
                entry["status"] = "unreadable"
                entry["error"] = f"{type(error).__name__}: {error}"
                rows.rows.clear()
                rows.add(f"results unreadable ({entry['error'][:80]})", "—", "—", None, "—", None)
                rows.rows[-1]["result"] = "failed"
        elif step["status"] == "skipped":
            rows.add(f"skipped: {' '.join(step['env']) or 'not run'}", "—", "—", None)
            rows.rows[-1]["result"] = "skipped"
        else:
            why = "timed out" if step["exit"] == 124 else f"exit {step['exit']}"
            if step["env"] == ["build failed"]:
                why = "the build failed"
            log = os.path.relpath(step["log"], root) if step.get("log") else "—"
            rows.add(f"script failed ({why} after {step['seconds']:.0f} s; log `{log}`)", "—", "—", None)
            rows.rows[-1]["result"] = "failed"
        entry["rows"] = rows.rows
        benchmarks[name] = entry
        all_rows.extend(rows.rows)
    build = next((s for s in steps if s["name"] == "build"), None)
    meta["build"] = build and {"status": build["status"], "seconds": build["seconds"]}
    result = {"meta": meta, "rows": all_rows, "benchmarks": benchmarks}
    with open(all_path, "w") as f:
        json.dump(result, f, indent=2)

    m = meta["machine"]
    counted = [r for r in all_rows if r["result"] in ("met", "missed")]
    met = sum(r["result"] == "met" for r in counted)
    print(f"Benchmarks, {meta['date']} ({meta['mode']} mode"
          + (f", {meta['rounds']} round{'s' if meta['rounds'] != 1 else ''}" if meta["rounds"] else "")
          + (f", {meta['elapsed_s'] // 60} min {meta['elapsed_s'] % 60} s" if meta["elapsed_s"] is not None else "")
          + f"), commit {commit}{' (uncommitted changes)' if dirty else ''}; "
          f"{m['cores']} cores, {m['cpu']}, {m['ram_gib']} GiB RAM, Linux {m['kernel']}"
          + (f"; load average {meta['load_before']} before, {meta['load_after']} after" if meta["load_before"] else "")
          + ".\n")
    print("| benchmark | measurement | regkeeper | peer | ratio | target | result |")
    print("|---|---|---:|---:|---:|---|---|")
    for r in all_rows:
        print(f"| {r['benchmark']} | {r['measurement']} | {r['regkeeper']} | {r['peer']} | {x(r['ratio'])} "
              f"| {r['target']} | {r['result']} |")
    print()
    print(f"Targets met: {met} of {len(counted)}. Ratio = regkeeper / peer (for latency and time, lower is better; "
          f"for rates, higher). Per benchmark: "
          + "; ".join(f"{LABEL.get(n, n)} {b['status']} ({b['seconds']:.0f} s)" for n, b in benchmarks.items())
          + (f"; build {build['status']} ({build['seconds']:.0f} s)" if build else "") + ".")
    print(f"\nResults JSON: {os.path.relpath(all_path, root)}", file=sys.stderr)
    return 1 if any(b["status"] != "ok" and b["status"] != "skipped" for b in benchmarks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

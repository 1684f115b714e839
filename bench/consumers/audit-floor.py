#!/usr/bin/env python3
"""The SQLite floor of an audit append, with no server around it.

    bench/consumers/audit-floor.py [SECONDS] [BATCH ...]   # default 3 s; batches 1 8 64

Appends resolve-shaped rows to a table shaped like regkeeper's `audit_log` (same
columns, primary key and index, WAL, synchronous=NORMAL), B rows per autocommit
multi-row INSERT, as the audit writer does, for SECONDS per batch size. The rows are
built (and chained with SHA-256) before the clock starts, so the figures are SQLite's
own: rows a second, commits a second and CPU µs per row (this process, one thread).
"""
import hashlib, json, os, sqlite3, sys, tempfile, time

SCHEMA = """
CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL,
 action TEXT NOT NULL, workspace TEXT, workspace_id TEXT, target TEXT, outcome TEXT NOT NULL,
 detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace_id, seq);
"""


def rows(start, count, previous):
    out = []
    for seq in range(start, start + count):
        detail = json.dumps({"id": "6f1c0d1e-8d8b-4a53-9d7a-5b0c1b7a9e11", "registry": "registry.bench.test",
                             "repository": "team-000005/app"}, separators=(",", ":"))
        fields = [seq, 1_700_000_000_000 + seq, "admin", "credential.resolve", "~admin",
                  "0b6f1f7e-1f6c-4c0e-9a51-0c6e3c7d2b10", "bench-000005", "success", detail]
        digest = hashlib.sha256((previous + "\n" + json.dumps(fields, separators=(",", ":"))).encode()).hexdigest()
        out += fields + [previous, digest]
        previous = digest
    return out, previous


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3
    batches = [int(b) for b in sys.argv[2:]] or [1, 8, 64]
    with tempfile.TemporaryDirectory() as directory:
        db = sqlite3.connect(os.path.join(directory, "floor.sqlite3"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        seq, previous = 1, "0" * 64
        for batch in batches:
            statement = "INSERT INTO audit_log VALUES " + ", ".join(["(?,?,?,?,?,?,?,?,?,?,?)"] * batch)
            # Enough rows for the run, built before timing.
            estimate = int(seconds * 400_000 / max(1, 8 // batch + 1)) // batch + 1
            prepared = []
            for _ in range(estimate):
                values, previous = rows(seq, batch, previous)
                prepared.append(values)
                seq += batch
            done = 0
            started, cpu = time.perf_counter(), time.process_time()
            for values in prepared:
                db.execute(statement, values)
                done += batch
                if time.perf_counter() - started >= seconds:
                    break
            wall, used = time.perf_counter() - started, time.process_time() - cpu
            print(json.dumps({"sqlite": sqlite3.sqlite_version, "batch": batch, "rows_per_s": round(done / wall),
                              "commits_per_s": round(done / batch / wall),
                              "cpu_us_per_row": round(used / done * 1e6, 2)}), flush=True)


main()

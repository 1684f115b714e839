#!/usr/bin/env python3
"""The SQLite floor of a new image's best-match read, with no server around it.

    bench/consumers/read-floor.py DATABASE [SECONDS]   # default 3 s

DATABASE is a regkeeper SQLite database (a server's `regkeeper.db`, e.g. one that
`bench/consumers.sh` seeded, kept with KEEP_WORK=1; it is opened read-only). Runs the
server's best-match SELECT — the statement `store::credentials::best_credential_for`
sends, with its joins and the covering prefixes of the repository as parameters — for
a new repository each time under a random one of the path prefixes of the host with the
most credentials, one thread, the statement prepared once as sqlx keeps it. Prints one
JSON line: queries a second, CPU µs per query (this process) and how many found a row.
"""
import json, random, sqlite3, sys, time

COLUMNS = """c.id, c.workspace_id, w.name AS workspace_name, c.name, c.kind, c.auth_method,
 c.registry_host, c.path_prefix, c.username, c.settings, c.secret_ciphertext, c.secret_wrapped_key,
 c.secret_key_version, c.secret_version, c.revision, c.created_at, c.updated_at, c.created_by, c.origin,
 c.verify_status, c.verify_message, c.verified_at, t.status AS token_status, t.expires_at AS token_expires_at,
 t.refresh_at AS token_refresh_at, t.last_error AS token_last_error"""
FROM = """credentials c JOIN workspaces w ON w.id = c.workspace_id
 LEFT JOIN registry_tokens t ON t.identity = c.token_identity"""


def main():
    path = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    workspace, host, _ = db.execute(
        "SELECT workspace_id, registry_host, count(*) AS n FROM credentials "
        "GROUP BY workspace_id, registry_host ORDER BY n DESC LIMIT 1").fetchone()
    prefixes = [p for (p,) in db.execute(
        "SELECT path_prefix FROM credentials WHERE workspace_id = ? AND registry_host = ? AND path_prefix != ''",
        (workspace, host))]
    # A repository PREFIX/app-N (N new each time) has three covering prefixes, as the
    # benchmark's new images do: '', PREFIX and PREFIX/app-N.
    statement = (f"SELECT {COLUMNS} FROM {FROM} WHERE c.workspace_id = ? AND c.registry_host = ? "
                 "AND c.path_prefix IN (?, ?, ?) ORDER BY length(c.path_prefix) DESC, c.name LIMIT 1")
    queries = [(workspace, host, "", prefix, f"{prefix}/app-{n}")
               for n, prefix in enumerate(random.choices(prefixes, k=int(seconds * 200_000)))]
    found = done = 0
    started, cpu = time.perf_counter(), time.process_time()
    for parameters in queries:
        found += db.execute(statement, parameters).fetchone() is not None
        done += 1
        if done % 256 == 0 and time.perf_counter() - started >= seconds:
            break
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"sqlite": sqlite3.sqlite_version, "credentials_on_host": len(prefixes),
                      "queries_per_s": round(done / wall), "cpu_us_per_query": round(used / done * 1e6, 2),
                      "found": found, "queries": done}))


main()

#!/usr/bin/env python3
"""Store docker-type credentials through regkeeper's REST API, concurrently.

    seed.py URL WORKSPACE FIRST COUNT [CONCURRENCY]

Reads the API token from REGKEEPER_TOKEN. Credential i is `bench-{i:06d}` for registry
`registry.bench.test` with path prefix `team-{i:06d}` and a stored password, created with
`"verify": false` (nothing is contacted). Every request goes through the real server:
authentication, sealing, the insert and its audit entry. Each worker keeps one
keep-alive connection. Prints one JSON line: created, seconds, rate.
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

HOST = "registry.bench.test"


def main() -> None:
    url, workspace, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    token = os.environ["REGKEEPER_TOKEN"]
    parsed = urllib.parse.urlsplit(url)
    path = f"/api/v1/workspaces/{urllib.parse.quote(workspace, safe='')}/credentials"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lock = threading.Lock()
    state = {"next": first, "end": first + count, "failed": None}

    def take() -> int | None:
        with lock:
            if state["failed"] or state["next"] >= state["end"]:
                return None
            index = state["next"]
            state["next"] += 1
            return index

    def worker() -> None:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        while (index := take()) is not None:
            body = json.dumps({
                "name": f"bench-{index:06d}",
                "type": "docker",
                "registry": HOST,
                "pathPrefix": f"team-{index:06d}",
                "username": f"user-{index}",
                "password": f"password-{index}",
                "verify": False,
            })
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 201:
                with lock:
                    state["failed"] = f"{index}: HTTP {response.status} {answer[:300]!r}"
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    if state["failed"]:
        sys.exit(f"seeding failed at credential {state['failed']}")
    print(json.dumps({"created": count, "seconds": round(seconds, 3), "rate": round(count / seconds, 1)}))


if __name__ == "__main__":
    main()

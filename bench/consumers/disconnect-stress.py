#!/usr/bin/env python3
"""Reproduces stuck database writes: clients that hang up while their write runs.

    disconnect-stress.py URL IMAGE [SECONDS] [THREADS] [MODE]

Reads the API token from REGKEEPER_TOKEN. Each thread repeatedly opens a connection,
sends a request, waits 0 to 4 ms and closes the connection without reading the
answer, so the server drops the request's future wherever it is. MODE `create`
(the default) sends `POST /api/v1/workspaces/~admin/credentials` (a docker
credential, `"verify": false`, a new name each time); MODE `resolve` sends
`POST /api/v1/resolve` for IMAGE. Afterwards it sends ten ordinary resolves of IMAGE
and reports how many succeed within 5 s; on an affected server they all fail (HTTP 500
`attempted to call begin_with at non-zero transaction depth`, or no answer while the
write lock is held) until it restarts. Exits 1 then. See bench/README.md, "Findings".
"""

import http.client
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse


def main() -> None:
    url, image = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    mode = sys.argv[5] if len(sys.argv) > 5 else "create"
    token = os.environ["REGKEEPER_TOKEN"]
    parsed = urllib.parse.urlsplit(url)
    body = json.dumps({"image": image}).encode()

    def raw_request(path: str, payload: bytes) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload

    def next_request(thread: int, number: int) -> bytes:
        if mode == "resolve":
            return raw_request("/api/v1/resolve", body)
        credential = json.dumps({
            "name": f"abandoned-{thread}-{number}-{random.getrandbits(32):08x}", "type": "docker",
            "registry": "abandoned.bench.test", "pathPrefix": f"t{thread}/{number}",
            "username": "user", "password": "password", "verify": False,
        }).encode()
        return raw_request("/api/v1/workspaces/%7Eadmin/credentials", credential)

    end = time.monotonic() + seconds
    sent = [0]

    def hang_up_repeatedly(thread: int) -> None:
        number = 0
        while time.monotonic() < end:
            number += 1
            with socket.create_connection((parsed.hostname, parsed.port)) as connection:
                connection.sendall(next_request(thread, number))
                time.sleep(random.random() * 0.004)
            sent[0] += 1

    workers = [threading.Thread(target=hang_up_repeatedly, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    statuses = []
    for _ in range(10):
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
        try:
            connection.request("POST", "/api/v1/resolve", body=body,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            statuses.append(connection.getresponse().status)
        except (TimeoutError, OSError):
            statuses.append("timeout")
        finally:
            connection.close()
    ok = statuses.count(200)
    print(json.dumps({"mode": mode, "abandoned_requests": sent[0], "resolves_after": statuses, "ok": ok}))
    sys.exit(0 if ok == len(statuses) else 1)


if __name__ == "__main__":
    main()

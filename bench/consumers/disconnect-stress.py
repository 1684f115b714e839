#!/usr/bin/env python3
"""Reproduces stuck database writes: clients that hang up while their resolve runs.

    disconnect-stress.py URL IMAGE [SECONDS] [THREADS]

Reads the API token from REGKEEPER_TOKEN. Each thread repeatedly opens a connection,
sends `POST /api/v1/resolve` for IMAGE, waits 0 to 4 ms and closes the connection
without reading the answer, so the server drops the request's future wherever it is.
Afterwards it sends ordinary resolves and reports how many succeed within 5 s; on an
affected server they all fail (HTTP 500 `attempted to call begin_with at non-zero
transaction depth`, or `database is locked` after the 10 s busy time-out) until it
restarts. See bench/README.md, "Findings".
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
    token = os.environ["REGKEEPER_TOKEN"]
    parsed = urllib.parse.urlsplit(url)
    body = json.dumps({"image": image}).encode()
    request = (
        f"POST /api/v1/resolve HTTP/1.1\r\nHost: {parsed.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    end = time.monotonic() + seconds
    sent = [0]

    def hang_up_repeatedly() -> None:
        while time.monotonic() < end:
            with socket.create_connection((parsed.hostname, parsed.port)) as connection:
                connection.sendall(request)
                time.sleep(random.random() * 0.004)
            sent[0] += 1

    workers = [threading.Thread(target=hang_up_repeatedly) for _ in range(threads)]
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
    print(json.dumps({"abandoned_requests": sent[0], "resolves_after": statuses, "ok": ok}))
    sys.exit(0 if ok == len(statuses) else 1)


if __name__ == "__main__":
    main()

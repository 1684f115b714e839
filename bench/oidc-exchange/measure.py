"""Times OIDC token exchanges beside a plain API-token request (bench/oidc-exchange.sh).

measure.py URL ISSUER CA_FILE ADMIN_TOKEN ROUNDS REQUESTS RESULTS

One kept-alive connection, one request at a time, the three kinds interleaved request by
request so that drift in the machine's load falls on all of them alike. Prints a
markdown table and writes RESULTS (JSON: date, commit, machine, per-round figures).
"""

import http.client
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid

url, issuer, ca_file, admin_token, rounds, requests, results = sys.argv[1:8]
rounds, requests = int(rounds), int(requests)
ROLE = "rk:~admin:role/builder"


def provider_tokens(count):
    """`count` distinct JWTs from the real provider (not timed)."""
    parsed = urllib.parse.urlparse(issuer)
    context = ssl.create_default_context(cafile=ca_file)
    connection = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context)
    tokens = []
    for _ in range(count):
        claims = {
            "sub": "repo:acme/app:ref:refs/heads/main",
            "repository_owner": "acme",
            "run_id": str(uuid.uuid4()),
        }
        body = urllib.parse.urlencode(
            {"grant_type": "client_credentials", "aud": "regkeeper", "claims": json.dumps(claims)}
        )
        connection.request(
            "POST", "/token", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        response = connection.getresponse()
        answer = response.read()
        assert response.status == 200, (response.status, answer[:200])
        tokens.append(json.loads(answer)["access_token"])
    return tokens


parsed = urllib.parse.urlparse(url)
server = http.client.HTTPConnection(parsed.hostname, parsed.port)


def timed(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    start = time.perf_counter()
    server.request(method, path, body, headers)
    response = server.getresponse()
    answer = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status == 200, (method, path, response.status, answer[:300])
    return elapsed, answer


def exchange(jwt):
    return timed("POST", "/api/v1/oidc/exchange", json.dumps({"role": ROLE, "token": jwt}))


# Warm-up: the first exchange fetches discovery and JWKS; later ones find them cached.
for jwt in provider_tokens(5):
    exchange(jwt)
for _ in range(20):
    timed("GET", "/api/v1/me", token=admin_token)


def summary(samples):
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "mean_ms": statistics.fmean(ordered),
    }


per_round = []
for round_number in range(1, rounds + 1):
    jwts = provider_tokens(requests)
    samples = {"me": [], "exchange": [], "replay": []}
    for jwt in jwts:
        elapsed, _ = timed("GET", "/api/v1/me", token=admin_token)
        samples["me"].append(elapsed)
        elapsed, first = exchange(jwt)
        samples["exchange"].append(elapsed)
        elapsed, again = exchange(jwt)
        samples["replay"].append(elapsed)
        assert json.loads(first)["token"] == json.loads(again)["token"], "a replay got another token"
    figures = {kind: summary(values) for kind, values in samples.items()}
    per_round.append(figures)
    print(
        f"round {round_number}: me {figures['me']['median_ms']:.2f} ms, "
        f"exchange {figures['exchange']['median_ms']:.2f} ms, "
        f"replay {figures['replay']['median_ms']:.2f} ms (medians)",
        file=sys.stderr,
    )

medians = {
    kind: statistics.median(figures[kind]["median_ms"] for figures in per_round)
    for kind in ("me", "exchange", "replay")
}
p95 = {
    kind: statistics.median(figures[kind]["p95_ms"] for figures in per_round)
    for kind in ("me", "exchange", "replay")
}
print()
print(f"OIDC exchange cost, {rounds} rounds x {requests} requests, medians over rounds")
print()
print("| request | median ms | p95 ms | vs plain API-token request |")
print("|---|---:|---:|---:|")
labels = {
    "me": "plain API-token request (`GET /api/v1/me`)",
    "exchange": "exchange, new JWT (warm JWKS)",
    "replay": "exchange, same JWT again",
}
for kind in ("me", "exchange", "replay"):
    ratio = medians[kind] / medians["me"]
    print(f"| {labels[kind]} | {medians[kind]:.2f} | {p95[kind]:.2f} | {ratio:.2f}x |")

try:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
except (OSError, subprocess.CalledProcessError):
    commit = "unknown"
os.makedirs(os.path.dirname(results), exist_ok=True)
with open(results, "w") as file:
    json.dump(
        {
            "benchmark": "oidc-exchange",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": commit,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "rounds": rounds,
            "requests": requests,
            "median_ms": medians,
            "p95_ms": p95,
            "ratio_vs_me": {kind: medians[kind] / medians["me"] for kind in medians},
            "per_round": per_round,
        },
        file,
        indent=2,
    )

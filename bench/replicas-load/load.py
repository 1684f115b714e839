#!/usr/bin/env python3
"""Sends N resolve requests at once, spread round-robin over several regkeeper replicas.

    load.py --urls URL[,URL...] --image IMAGE --secret SECRET [--requests N]
            [--concurrency C] [--out FILE]

Reads the API token from REGKEEPER_TOKEN. Standard library only (asyncio streams,
HTTP/1.1 with `Connection: close`): every request opens its own connection, so with
the default concurrency (= requests) all N are in flight together. Latency runs from
just before connecting to the last byte of the answer. A request counts as an error
unless it answers 200 with the expected secret. Prints and writes JSON: p50/p90/p99/max
latency, throughput, errors by kind and requests per replica.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.parse


async def one(url, token, body, secret, semaphore, latencies, errors):
    parsed = urllib.parse.urlsplit(url)
    request = (
        f"POST /api/v1/resolve HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    async with semaphore:
        started = time.perf_counter()
        writer = None
        try:
            reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
            writer.write(request)
            await writer.drain()
            response = await reader.read()
            elapsed = time.perf_counter() - started
        except (OSError, asyncio.IncompleteReadError) as error:
            errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
            return
        finally:
            if writer is not None:
                writer.close()
        head, _, payload = response.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode() if b" " in head else "no-status"
        if status != "200":
            errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
            return
        if b"transfer-encoding: chunked" in head.lower():
            # Not expected from axum for a JSON body of known length; count it.
            errors["chunked"] = errors.get("chunked", 0) + 1
            return
        try:
            answer = json.loads(payload)
        except ValueError:
            errors["bad_json"] = errors.get("bad_json", 0) + 1
            return
        if answer.get("secret") != secret:
            errors["wrong_secret"] = errors.get("wrong_secret", 0) + 1
            return
        latencies.setdefault(url, []).append(elapsed)


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--out")
    arguments = parser.parse_args()
    urls = arguments.urls.split(",")
    token = os.environ["REGKEEPER_TOKEN"]
    body = json.dumps({"image": arguments.image}).encode()
    concurrency = arguments.concurrency or arguments.requests
    semaphore = asyncio.Semaphore(concurrency)
    latencies, errors = {}, {}
    started = time.perf_counter()
    await asyncio.gather(*(
        one(urls[n % len(urls)], token, body, arguments.secret, semaphore, latencies, errors)
        for n in range(arguments.requests)
    ))
    wall = time.perf_counter() - started
    every = sorted(value for values in latencies.values() for value in values)
    milliseconds = lambda value: None if value is None else round(value * 1000, 2)
    result = {
        "requests": arguments.requests,
        "concurrency": concurrency,
        "replicas": len(urls),
        "ok": len(every),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "wall_seconds": round(wall, 3),
        "throughput_per_second": round(arguments.requests / wall, 1),
        "latency_ms": {
            "p50": milliseconds(percentile(every, 0.50)),
            "p90": milliseconds(percentile(every, 0.90)),
            "p99": milliseconds(percentile(every, 0.99)),
            "max": milliseconds(every[-1] if every else None),
            "mean": milliseconds(statistics.fmean(every) if every else None),
        },
        "ok_per_replica": {url: len(values) for url, values in latencies.items()},
        "p50_ms_per_replica": {
            url: milliseconds(percentile(sorted(values), 0.50)) for url, values in latencies.items()
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if arguments.out:
        with open(arguments.out, "w") as file:
            file.write(text + "\n")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

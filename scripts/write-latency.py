#!/usr/bin/env python3
"""Latency of a simple write endpoint of a running jointeval: an admin disables and
enables an account, alternately, one request at a time.

Usage: scripts/write-latency.py BASE_URL EMAIL PASSWORD [N]
e.g.   JOINTEVAL_ADMIN_PASSWORD_US='latency test passphrase' cargo run --release -- serve --data-dir /tmp/lat &
       scripts/write-latency.py http://127.0.0.1:8080 admin@us.jointeval.invalid 'latency test passphrase'

Each request is one transaction that reads the account, updates it and (since the audit
trail) appends an event; it measures what a change costs end to end.
"""
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request
import uuid


def call(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b"{}"
    request = urllib.request.Request(
        f"{base}{path}", data=data, method=method,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def main():
    base, email, password = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    form = urllib.parse.urlencode(
        {"grant_type": "password", "username": email, "password": password}).encode()
    token = json.loads(urllib.request.urlopen(f"{base}/v1/auth/token", data=form).read())["access_token"]
    created = call(base, token, "POST", "/v1/accounts", {
        "kind": "person", "email": f"latency-{uuid.uuid4().hex[:8]}@example.org",
        "display_name": "Latency target"})
    account = created["account"]["id"]
    ms = []
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        call(base, token, "POST", f"/v1/accounts/{account}/{'disable' if i % 2 == 0 else 'enable'}")
        ms.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    ms.sort()
    print(f"disable/enable n={n} p50={statistics.median(ms):.2f} ms "
          f"p95={ms[int(0.95 * n) - 1]:.2f} ms p99={ms[int(0.99 * n) - 1]:.2f} ms "
          f"rate={n / elapsed:.0f} req/s")


if __name__ == "__main__":
    main()

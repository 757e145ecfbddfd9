#!/usr/bin/env python3
"""Login latency of a running jointeval: right password, wrong password, unknown account.

Usage: scripts/login-latency.py BASE_URL EMAIL PASSWORD [N]
e.g.   JOINTEVAL_ADMIN_PASSWORD_US='latency test passphrase' cargo run --release -- serve --data-dir /tmp/lat &
       scripts/login-latency.py http://127.0.0.1:8080 admin@us.jointeval.invalid 'latency test passphrase'

The three cases interleave, and each round ends with a successful login, so that the
account is never throttled. Wrong and unknown should not differ: an unknown account is
checked against a dummy hash.
"""
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def post(base, user, password):
    data = urllib.parse.urlencode(
        {"grant_type": "password", "username": user, "password": password}
    ).encode()
    started = time.perf_counter()
    try:
        urllib.request.urlopen(f"{base}/v1/auth/token", data=data).read()
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    return (time.perf_counter() - started) * 1000, status


def main():
    base, email, password = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    runs = {"right password": [], "wrong password": [], "unknown account": []}
    for i in range(n):
        runs["wrong password"].append(post(base, email, "not the passphrase at all"))
        runs["unknown account"].append(post(base, f"nobody{i}@example.org", "not the passphrase at all"))
        runs["right password"].append(post(base, email, password))
    for name, results in runs.items():
        ms = sorted(m for m, _ in results)
        statuses = sorted({s for _, s in results})
        print(f"{name:16} n={len(ms)} p50={statistics.median(ms):.1f} ms "
              f"p95={ms[int(0.95 * len(ms)) - 1]:.1f} ms statuses={statuses}")


if __name__ == "__main__":
    main()

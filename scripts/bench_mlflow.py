#!/usr/bin/env python3
"""jointeval side by side with an MLflow tracking server, on the same machine, in one run.

Started by scripts/bench-mlflow, which installs MLflow, starts it on a database of the
same PostgreSQL and passes --mlflow-url. Both servers are driven by the same Python
code, so whatever the client costs, it costs both the same:

(a) ingestion: metric values per second, 1,000 values a request, through MLflow's
    `POST /api/2.0/mlflow/runs/log-batch` and our `POST /v1/runs/{id}/samples`
    (NDJSON, the form harnesses stream; the JSON-array form is measured as well), with
    1 and 8 clients;
(b) reading a run: `GET /api/2.0/mlflow/runs/get` against our `GET /v1/runs/{id}`, with
    1 and 8 clients, p50/p95/p99. MLflow's answer carries the run's latest metrics,
    params and tags, ours only the run, so ours is also measured as run then
    `GET …/metrics`, two requests in a row, as one operation.

How it stays fair:
- each client is a thread with one requests.Session (kept-alive connection) and its
  own run on each server: 8 clients are 8 harnesses, each writing its own run;
- every request writes new values (a value once written is never sent again: MLflow
  refuses an exact duplicate, and we would take the slower upsert path). A client's
  body is serialised before timing into fragments around a request number, so that
  building a request is one `bytes.join`, the same for both servers;
- an MLflow metric (key, step, value, timestamp) matches one of our scores
  (scorer, sample_id, value, epoch): key/scorer `accuracy`, step/sample_id
  `request number × 1,000 + i`, the same values;
- a phase runs for a fixed time after a short unmeasured warm-up; the servers take
  turns (never both at once), MLflow first.

It prints a table and the ratios and writes every raw figure to --out as JSON.

    scripts/bench_mlflow.py --url http://127.0.0.1:8080 --admin-password PW \
        --mlflow-url http://127.0.0.1:5000 --out bench-mlflow.json [--seconds 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import requests

BATCH = 1_000
KEY = "accuracy"
TIMEOUT = 120
WARMUP_REQUESTS = 3


class ServerError(RuntimeError):
    """A server answered something other than what the call expects."""


def expect(response: requests.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise ServerError(
            f"{what}: {response.request.method} {response.request.path_url} answered "
            f"{response.status_code} (expected {status}): {response.text[:1000]}"
        )
    return response.json() if response.content else None


def session(headers: dict[str, str] | None = None) -> requests.Session:
    s = requests.Session()
    if headers:
        s.headers.update(headers)
    return s


# --- jointeval: the setup a run needs ------------------------------------------------------


class Jointeval:
    """Our API, by plain HTTP. The setup follows examples/setup_demo.py: nobody grants
    their own roles, so the bootstrapped admins create the people who do the work."""

    def __init__(self, url: str, admin_password: str) -> None:
        self.url = url.rstrip("/")
        self.admin_password = admin_password
        self.suffix = secrets.token_hex(3)

    def token(self, form: dict[str, str]) -> str:
        r = requests.post(f"{self.url}/v1/auth/token", data=form, timeout=TIMEOUT)
        return expect(r, 200, "log in")["access_token"]

    def person(self, email: str, password: str) -> requests.Session:
        return session({"Authorization": "Bearer " + self.token(
            {"grant_type": "password", "username": email, "password": password})})

    def service(self, client_id: str, client_secret: str) -> requests.Session:
        return session({"Authorization": "Bearer " + self.token(
            {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})})

    def call(self, s: requests.Session, method: str, path: str, status: int, what: str,
             body: Any = None, headers: dict[str, str] | None = None) -> Any:
        r = s.request(method, self.url + path, json=body, headers=headers, timeout=TIMEOUT)
        return expect(r, status, what)

    def admin(self, code: str) -> requests.Session:
        s = self.person(f"admin@{code.lower()}.jointeval.invalid", self.admin_password)
        if self.call(s, "GET", "/v1/me", 200, f"{code} admin")["must_change_password"]:
            # scripts/bench logs in as the admins after us: their password stays theirs.
            raise SystemExit(f"bench_mlflow: the {code} admin still has a one-time password; "
                             "start the service with JOINTEVAL_ADMIN_PASSWORD_US/_UK set")
        return s

    def new_person(self, admin: requests.Session, code: str, name: str, roles: list[str]) -> requests.Session:
        email = f"{name}-{self.suffix}@{code.lower()}.jointeval.invalid"
        created = self.call(admin, "POST", "/v1/accounts", 201, f"create {email}",
                            {"kind": "person", "email": email, "display_name": f"bench {name}"})
        for role in roles:
            self.call(admin, "POST", f"/v1/accounts/{created['account']['id']}/memberships", 201,
                      f"grant {role} to {email}", {"role": role})
        one_time = created["one_time_password"]
        password = secrets.token_urlsafe(24)
        self.call(self.person(email, one_time), "POST", "/v1/me/password", 204, f"{email} changes its password",
                  {"current_password": one_time, "new_password": password})
        return self.person(email, password)

    def setup(self, runs: int) -> dict[str, Any]:
        """An active exercise with `runs` running runs of the US, and a harness (a
        service account, evaluator at US) that writes and reads them."""
        us_admin, uk_admin = self.admin("US"), self.admin("UK")
        evaluator = self.new_person(us_admin, "US", "author", ["author", "evaluator"])
        reviewers = [self.new_person(us_admin, "US", "reviewer", ["reviewer"]),
                     self.new_person(uk_admin, "UK", "reviewer", ["reviewer"])]
        protocol = self.call(evaluator, "POST", "/v1/protocols", 201, "create the protocol", {
            "slug": f"bench-mlflow-{self.suffix}", "title": "Benchmark against MLflow",
            "risk_area": "other", "participants": ["US", "UK"]})
        pid = protocol["id"]
        version = self.call(evaluator, "POST", f"/v1/protocols/{pid}/versions", 201, "create the draft", {
            "content": {
                "objective": "Throughput and latency, side by side with MLflow",
                "tasks": [{
                    "name": "bench",
                    "dataset": {"name": "bench-data", "version": "1", "sha256": None, "sample_count": 1000},
                    "harness": {"name": "bench", "task_ref": "bench"},
                    "scorers": [KEY], "metrics": [KEY], "epochs": 1}],
                "metrics": [{"name": KEY, "higher_is_better": True, "threshold": None}]}})
        number = version["number"]
        submitted = self.call(evaluator, "POST", f"/v1/protocols/{pid}/versions/{number}/submit", 200,
                              "submit the draft")
        # A review is bound to the content's hash, as the submission answered it.
        bound = f'"{submitted["content_sha256"]}"'
        for reviewer in reviewers:
            self.call(reviewer, "POST", f"/v1/protocols/{pid}/versions/{number}/reviews", 201,
                      "approve the version", {"verdict": "approve"}, headers={"if-match": bound})
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        exercise = self.call(us_admin, "POST", "/v1/exercises", 201, "plan the exercise", {
            "title": f"Benchmark against MLflow {self.suffix}",
            "model": {"provider": "bench", "name": "bench", "version": "1", "access": "public_api"},
            "protocol_versions": [{"protocol_id": pid, "number": number}],
            "participants": ["US", "UK"],
            "starts_at": now.isoformat(), "ends_at": (now + dt.timedelta(days=1)).isoformat()})
        for admin in (us_admin, uk_admin):
            path = f"/v1/exercises/{exercise['id']}"
            read = admin.get(self.url + path, timeout=TIMEOUT)
            if read.status_code != 200:
                raise ServerError(f"reading the exercise answered {read.status_code}: {read.text}")
            exercise = self.call(admin, "POST", f"{path}/agree", 200, "agree", {},
                                 headers={"if-match": read.headers["etag"]})
        if exercise["status"] != "active":
            raise ServerError(f"the exercise agreed by both admins is {exercise['status']}, not active")
        harness = self.call(us_admin, "POST", "/v1/accounts", 201, "create the service account", {
            "kind": "service", "display_name": f"bench harness {self.suffix}",
            "scopes": ["runs:read", "runs:write", "results:write"]})
        self.call(us_admin, "POST", f"/v1/accounts/{harness['account']['id']}/memberships", 201,
                  "grant evaluator to the service account", {"role": "evaluator"})
        run_ids = []
        for i in range(runs):
            run = self.call(evaluator, "POST", f"/v1/exercises/{exercise['id']}/runs", 201, "create a run", {
                "protocol_id": pid, "protocol_version": number,
                "harness": {"name": "bench", "version": "1"},
                "config": {"task": "bench", "model": "bench/model", "client": i},
                "model_version": "bench-1"}, headers={"Idempotency-Key": f"bench-mlflow-{self.suffix}-{i}"})
            self.call(evaluator, "POST", f"/v1/runs/{run['id']}/start", 200, "start the run")
            run_ids.append(run["id"])
        return {"client_id": harness["client_id"], "client_secret": harness["client_secret"],
                "run_ids": run_ids, "exercise_id": exercise["id"], "protocol_id": pid}


# --- MLflow: the same, its way -------------------------------------------------------------


class Mlflow:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.api = self.url + "/api/2.0/mlflow"

    def setup(self, runs: int) -> dict[str, Any]:
        """An experiment with `runs` runs, each with the params and tags that stand for
        our run's config and harness."""
        s = session()
        name = f"bench-mlflow-{secrets.token_hex(3)}"
        experiment = expect(s.post(f"{self.api}/experiments/create", json={"name": name}, timeout=TIMEOUT),
                            200, "create the experiment")["experiment_id"]
        run_ids = []
        for i in range(runs):
            run = expect(s.post(f"{self.api}/runs/create", timeout=TIMEOUT, json={
                "experiment_id": experiment, "run_name": f"client-{i}",
                "start_time": int(time.time() * 1000),
                "tags": [{"key": "harness", "value": "bench"}, {"key": "model_version", "value": "bench-1"}]}),
                200, "create a run")["run"]["info"]["run_id"]
            expect(s.post(f"{self.api}/runs/log-batch", timeout=TIMEOUT, json={
                "run_id": run, "params": [{"key": "task", "value": "bench"},
                                          {"key": "model", "value": "bench/model"},
                                          {"key": "client", "value": str(i)}]}),
                   200, "log the params")
            run_ids.append(run)
        return {"experiment_id": experiment, "run_ids": run_ids}


# --- the request bodies ------------------------------------------------------------------


def value_of(i: int) -> str:
    """The i-th value of every batch: spread over [0, 1), the same text for both."""
    return f"{(i * 7919) % 1000 / 1000:.3f}"


def fragments(template: Callable[[int], str], prefix: str = "", separator: str = "",
              suffix: str = "") -> list[bytes]:
    """A body as the pieces between the places of the request number. Each item holds
    the number once, at `\\0`; `\\0`.join of the pieces with the number puts it back.
    The number is a prefix of the item's id (number × 1,000 + i, with i on 3 digits),
    so no id repeats across requests of one run."""
    text = prefix + separator.join(template(i) for i in range(BATCH)) + suffix
    return [part.encode() for part in text.split("\0")]


def mlflow_body(run_id: str) -> list[bytes]:
    # A fixed timestamp: the step already makes every metric new.
    timestamp = int(time.time() * 1000)
    return fragments(
        lambda i: f'{{"key":"{KEY}","value":{value_of(i)},"timestamp":{timestamp},"step":\0{i:03d}}}',
        prefix=f'{{"run_id":"{run_id}","metrics":[', separator=",", suffix="]}")


def ndjson_body() -> list[bytes]:
    return fragments(lambda i: f'{{"sample_id":\0{i:03d},"epoch":1,"scorer":"{KEY}","value":{value_of(i)}}}\n')


def json_array_body() -> list[bytes]:
    return fragments(lambda i: f'{{"sample_id":\0{i:03d},"epoch":1,"scorer":"{KEY}","value":{value_of(i)}}}',
                     prefix="[", separator=",", suffix="]")


# --- measuring ---------------------------------------------------------------------------


@dataclass
class Client:
    """One client of a phase: its session, and what it sends where."""
    session: requests.Session
    url: str
    method: str = "GET"
    parts: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The number of the client's next request to its run; kept across phases so that
    # nothing is ever written twice.
    counter: list[int] | None = None
    # A second request that completes the operation (our run, then its metrics).
    then: str | None = None


def one(client: Client, status: int) -> tuple[float, str | None]:
    """Sends one request (or operation); answers its seconds and an error, if any."""
    body = None
    if client.parts is not None:
        assert client.counter is not None
        client.counter[0] += 1
        body = str(client.counter[0]).encode().join(client.parts)
    started = time.perf_counter()
    try:
        r = client.session.request(client.method, client.url, data=body, headers=client.headers, timeout=TIMEOUT)
        if r.status_code == status and client.then:
            r = client.session.get(client.then, timeout=TIMEOUT)
        elapsed = time.perf_counter() - started
    except requests.RequestException as e:
        return time.perf_counter() - started, f"{type(e).__name__}: {e}"
    if r.status_code != status:
        return elapsed, f"{client.method} {r.request.path_url} answered {r.status_code}: {r.text[:500]}"
    return elapsed, None


def phase(clients: list[Client], seconds: float, status: int = 200) -> dict[str, Any]:
    """All clients at once for `seconds`, after WARMUP_REQUESTS unmeasured requests each."""
    latencies: list[list[float]] = [[] for _ in clients]
    errors: list[list[str]] = [[] for _ in clients]
    ends = [0.0] * len(clients)
    barrier = threading.Barrier(len(clients) + 1)
    start: list[float] = [0.0]

    def work(k: int) -> None:
        client = clients[k]
        for _ in range(WARMUP_REQUESTS):
            _, error = one(client, status)
            if error:
                errors[k].append("warm-up: " + error)
        barrier.wait()
        barrier.wait()
        deadline = start[0] + seconds
        while time.perf_counter() < deadline:
            elapsed, error = one(client, status)
            if error:
                errors[k].append(error)
                # A server that fails fails fast: ten errors say enough.
                if len(errors[k]) >= 10:
                    break
            else:
                latencies[k].append(elapsed)
        ends[k] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(clients))]
    for t in threads:
        t.start()
    barrier.wait()  # every client warmed up
    start[0] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = max(ends) - start[0]
    every = sorted(x for per in latencies for x in per)
    ok = len(every)
    return {
        "clients": len(clients), "seconds": wall, "requests": ok,
        "requests_per_second": ok / wall if wall > 0 else 0.0,
        "latency_ms": {f"p{p}": percentile(every, p) * 1000 for p in (50, 95, 99)}
        | {"mean": (sum(every) / ok * 1000) if ok else None, "max": every[-1] * 1000 if ok else None},
        "errors": sum(len(e) for e in errors),
        "first_errors": [e for per in errors for e in per][:5],
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest rank; `values` sorted."""
    if not values:
        return float("nan")
    rank = max(1, -(-len(values) * p // 100))
    return values[int(rank) - 1]


# --- the run -----------------------------------------------------------------------------


def git_commit(repo: str) -> str:
    try:
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="our service")
    parser.add_argument("--admin-password", required=True, help="of admin@us… and admin@uk.jointeval.invalid")
    parser.add_argument("--mlflow-url", required=True)
    parser.add_argument("--out", required=True, help="JSON file of every figure")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    parser.add_argument("--clients", default="1,8", help="client counts (default 1,8)")
    parser.add_argument("--mlflow-workers", default=None, help="recorded in the JSON (set by the wrapper)")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    most = max(counts)
    # Both servers share the machine with whatever else runs: the load says how much.
    load_at_start = os.getloadavg()

    ours = Jointeval(args.url, args.admin_password)
    theirs = Mlflow(args.mlflow_url)
    print(f"bench-mlflow: setting up {most} runs on each server", file=sys.stderr)
    our_setup = ours.setup(most)
    their_setup = theirs.setup(most)

    def our_sessions() -> list[requests.Session]:
        # A fresh token per phase: a long run must not outlive one (15 minutes by default).
        return [ours.service(our_setup["client_id"], our_setup["client_secret"]) for _ in range(most)]

    our_counters = [[0] for _ in range(most)]
    their_counters = [[0] for _ in range(most)]
    our_runs, their_runs = our_setup["run_ids"], their_setup["run_ids"]

    their_parts = [mlflow_body(r) for r in their_runs]
    ndjson, array = ndjson_body(), json_array_body()
    results: dict[str, Any] = {"ingest": {}, "read": {}}

    for n in counts:
        print(f"bench-mlflow: ingest, {n} client(s), {args.seconds:g}s each", file=sys.stderr)
        row = results["ingest"][str(n)] = {}
        row["mlflow"] = phase([Client(session(), f"{theirs.api}/runs/log-batch", "POST", their_parts[k],
                                      {"Content-Type": "application/json"}, their_counters[k])
                               for k in range(n)], args.seconds)
        sessions = our_sessions()
        row["ours_ndjson"] = phase([Client(sessions[k], f"{ours.url}/v1/runs/{our_runs[k]}/samples", "POST",
                                           ndjson, {"Content-Type": "application/x-ndjson"}, our_counters[k])
                                    for k in range(n)], args.seconds)
        sessions = our_sessions()
        row["ours_json"] = phase([Client(sessions[k], f"{ours.url}/v1/runs/{our_runs[k]}/samples", "POST",
                                         array, {"Content-Type": "application/json"}, our_counters[k])
                                  for k in range(n)], args.seconds)
        for figures in row.values():
            figures["values_per_second"] = figures["requests_per_second"] * BATCH

    # Each run now has what a harness writes: its samples, and an aggregate metric of
    # ours to stand beside MLflow's latest value of `accuracy`.
    sessions = our_sessions()
    for k, run in enumerate(our_runs):
        ours.call(sessions[k], "POST", f"/v1/runs/{run}/metrics", 200, "write the aggregate metric",
                  {"metrics": [{"scorer": KEY, "metric": KEY, "value": 0.5, "stderr": 0.01,
                                "sample_count": our_counters[k][0] * BATCH}]})

    for n in counts:
        print(f"bench-mlflow: read a run, {n} client(s), {args.seconds:g}s each", file=sys.stderr)
        row = results["read"][str(n)] = {}
        row["mlflow"] = phase([Client(session(), f"{theirs.api}/runs/get?run_id={their_runs[k]}")
                               for k in range(n)], args.seconds)
        sessions = our_sessions()
        row["ours"] = phase([Client(sessions[k], f"{ours.url}/v1/runs/{our_runs[k]}")
                             for k in range(n)], args.seconds)
        sessions = our_sessions()
        row["ours_with_metrics"] = phase([Client(sessions[k], f"{ours.url}/v1/runs/{our_runs[k]}",
                                                 then=f"{ours.url}/v1/runs/{our_runs[k]}/metrics")
                                          for k in range(n)], args.seconds)

    # What was written must be there, or no ratio means anything. One more batch to each
    # of our runs answers how many scores the run holds; MLflow's latest `accuracy` of a
    # run is its highest step, that of the last value written.
    sessions = our_sessions()
    stored = []
    for k, run in enumerate(our_runs):
        our_counters[k][0] += 1
        body = str(our_counters[k][0]).encode().join(ndjson)
        r = sessions[k].post(f"{ours.url}/v1/runs/{run}/samples", data=body, timeout=TIMEOUT,
                             headers={"Content-Type": "application/x-ndjson"})
        stored.append(expect(r, 200, "count the stored scores")["stored"])
    check = session()
    their_last_step = []
    for r in their_runs:
        latest = expect(check.get(f"{theirs.api}/runs/get?run_id={r}", timeout=TIMEOUT), 200, "read back")
        their_last_step.append(max((m["step"] for m in latest["run"]["data"].get("metrics", [])
                                    if m["key"] == KEY), default=None))
    written = {"ours_sent": [c[0] * BATCH for c in our_counters], "ours_stored": stored,
               "mlflow_sent": [c[0] * BATCH for c in their_counters],
               "mlflow_last_step": their_last_step,
               "mlflow_expected_last_step": [c[0] * BATCH + BATCH - 1 if c[0] else None for c in their_counters]}
    if written["ours_sent"] != stored or [int(x) if x is not None else None for x in their_last_step] \
            != written["mlflow_expected_last_step"]:
        print(f"bench-mlflow: what the servers hold is not what was sent: {json.dumps(written)}", file=sys.stderr)
        mismatch = True
    else:
        mismatch = False

    ratios = {}
    for n in counts:
        ing, rd = results["ingest"][str(n)], results["read"][str(n)]
        m = ing["mlflow"]["values_per_second"]
        ratios[f"ingest_ndjson_{n}"] = ing["ours_ndjson"]["values_per_second"] / m if m else None
        ratios[f"ingest_json_{n}"] = ing["ours_json"]["values_per_second"] / m if m else None
        ratios[f"read_p99_{n}"] = rd["ours"]["latency_ms"]["p99"] / rd["mlflow"]["latency_ms"]["p99"]
        ratios[f"read_with_metrics_p99_{n}"] = (rd["ours_with_metrics"]["latency_ms"]["p99"]
                                                / rd["mlflow"]["latency_ms"]["p99"])

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "jointeval_commit": git_commit(repo),
            "mlflow": metadata.version("mlflow"),
            "requests": metadata.version("requests"),
            "python": platform.python_version(),
        },
        "machine": {"cores": os.cpu_count(), "load_average_at_start": load_at_start,
                    "load_average_at_end": os.getloadavg(), "platform": platform.platform()},
        "settings": {"seconds_per_phase": args.seconds, "values_per_request": BATCH, "clients": counts,
                     "warmup_requests_per_client": WARMUP_REQUESTS, "mlflow_workers": args.mlflow_workers},
        "setup": {"ours": {k: v for k, v in our_setup.items() if k != "client_secret"}, "mlflow": their_setup},
        "written": written,
        "results": results,
        "ratios": ratios,
        "targets": {"ingest_at_least": 10.0, "read_p99_at_most": 0.1},
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print_table(report)
    failures = [f"{name}: {figures['errors']} errors, first: {figures['first_errors'][0]}"
                for kind in results.values() for per in kind.values() for name, figures in per.items()
                if figures["errors"]]
    if failures:
        print("bench-mlflow: requests failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    if failures or mismatch:
        sys.exit(1)


def print_table(report: dict[str, Any]) -> None:
    v = report["versions"]
    print(f"jointeval {v['jointeval_commit']} against MLflow {v['mlflow']}, "
          f"{report['settings']['seconds_per_phase']:g}s a phase, {BATCH} values a request, "
          f"{report['machine']['cores']} cores, load {report['machine']['load_average_at_start'][0]:.1f} "
          f"at start, {report['machine']['load_average_at_end'][0]:.1f} at end")
    print()
    print(f"{'ingest':<22}{'clients':>8}{'values/s':>12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for n, row in report["results"]["ingest"].items():
        for name, f in row.items():
            print(f"{name:<22}{n:>8}{f['values_per_second']:>12,.0f}{f['requests_per_second']:>9.1f}"
                  f"{f['latency_ms']['p50']:>9.1f}{f['latency_ms']['p99']:>9.1f}{f['errors']:>8}")
    print()
    print(f"{'read a run':<22}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for n, row in report["results"]["read"].items():
        for name, f in row.items():
            lat = f["latency_ms"]
            print(f"{name:<22}{n:>8}{f['requests_per_second']:>9.1f}{lat['p50']:>9.2f}{lat['p95']:>9.2f}"
                  f"{lat['p99']:>9.2f}{f['errors']:>8}")
    print()
    print("ratios (target: ingest ours/MLflow >= 10, read p99 ours/MLflow <= 0.1)")
    for name, ratio in report["ratios"].items():
        if ratio is None:
            print(f"  {name:<28} n/a")
            continue
        target = report["targets"]["ingest_at_least"] if name.startswith("ingest") else report["targets"]["read_p99_at_most"]
        met = ratio >= target if name.startswith("ingest") else ratio <= target
        print(f"  {name:<28}{ratio:>9.3f}  {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    try:
        main()
    except ServerError as e:
        sys.exit(f"bench-mlflow: {e}")

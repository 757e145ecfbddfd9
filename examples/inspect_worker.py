#!/usr/bin/env python3
"""An example partner tool: an Inspect harness that works through jointeval's run queue.

It talks to jointeval only through `jointeval_client`, the client that
openapi-python-client generates from openapi.yaml:

1. logs in as a service account (`client_credentials`);
2. claims the oldest queued run of its institute registered for the `inspect` harness
   (`POST /v1/runs/claim`), which gives it a lease;
3. runs the Inspect task the run's config names, on Inspect's built-in mock model
   (`mockllm/model`, no network), renewing the lease with heartbeats meanwhile;
4. uploads the `.eval` log Inspect wrote (`POST /v1/runs/{id}/inspect-log`): the service
   takes the metrics and per-sample scores from it and records how the run deviates from
   its protocol version;
5. finishes the run (`succeeded`, or `failed` when the evaluation failed) and prints the
   run as the service now has it: status, metrics, deviations.

    python inspect_worker.py --base-url http://127.0.0.1:8080 \\
        --client-id ... --client-secret ...    # or JOINTEVAL_CLIENT_ID / _SECRET

On standard output it prints one JSON object (run_id, status, metrics, deviations, …);
progress goes to standard error. Exit status: 0 when a run was taken and finished
`succeeded`, 1 on any failure, 3 when no run waited in the queue.

A real harness would run its institute's own tasks against the exercise's model; this
one knows a single task, `arith_small`, the one `setup_demo.py` puts in the protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

try:
    from jointeval_client import AuthenticatedClient, Client
    from jointeval_client.api.auth import token
    from jointeval_client.api.runs import claim_run, finish_run, get_metrics, get_run, heartbeat, import_log
    from jointeval_client.models import (
        ClaimRequest,
        FinishRequest,
        HeartbeatRequest,
        Imported,
        Problem,
        RunStatus,
        RunView,
        TokenRequest,
        TokenResponse,
    )
    from jointeval_client.types import File
except ImportError as e:
    sys.exit(f"cannot import the generated client ({e}); generate it first: see examples/README.md")

HARNESS = "inspect"
TIMEOUT = 60.0


def say(message: str) -> None:
    print(f"inspect_worker: {message}", file=sys.stderr, flush=True)


class ApiError(RuntimeError):
    """A call answered another status than the ones expected."""


def call(endpoint: Any, *args: Any, expect: int | tuple[int, ...] = 200, **kwargs: Any) -> Any:
    """Calls a generated endpoint's `sync_detailed`; answers the parsed body, typed."""
    expected = (expect,) if isinstance(expect, int) else expect
    response = endpoint.sync_detailed(*args, **kwargs)
    if response.status_code not in expected:
        name = endpoint.__name__.rsplit(".", 1)[-1]
        body = response.parsed
        detail = json.dumps(body.to_dict()) if isinstance(body, Problem) else response.content.decode(errors="replace")
        raise ApiError(f"{name} answered {int(response.status_code)} (expected {expected}): {detail}")
    return response.parsed


def service_login(base_url: str, client_id: str, client_secret: str) -> AuthenticatedClient:
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True, timeout=TIMEOUT)
    answer = call(
        token,
        client=anonymous,
        body=TokenRequest(grant_type="client_credentials", client_id=client_id, client_secret=client_secret),
    )
    assert isinstance(answer, TokenResponse)
    return AuthenticatedClient(
        base_url=base_url, token=answer.access_token, raise_on_unexpected_status=True, timeout=TIMEOUT
    )


# --- The lease ----------------------------------------------------------------------


class Heartbeat:
    """Renews the run's lease every third of its length while the evaluation runs."""

    def __init__(self, client: AuthenticatedClient, run_id: UUID, lease_seconds: int) -> None:
        self.client = client
        self.run_id = run_id
        self.lease_seconds = lease_seconds
        self.stop = threading.Event()
        self.error: Exception | None = None
        self.beats = 0
        self.thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def beat(self) -> RunView:
        run = call(heartbeat, self.run_id, client=self.client, body=HeartbeatRequest(lease_seconds=self.lease_seconds))
        assert isinstance(run, RunView)
        self.beats += 1
        return run

    def _loop(self) -> None:
        while not self.stop.wait(self.lease_seconds / 3):
            try:
                self.beat()
            except Exception as e:  # the main thread reports it
                self.error = e
                return

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


# --- Inspect ------------------------------------------------------------------------


def arith_small() -> tuple[Any, list[Any]]:
    """20 sums, scored by `match` (numeric) and `includes`, 1 epoch; with the mock model's
    answers, 80 % of them right. The same task as tests/fixtures/inspect/make_logs.py."""
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import includes, match
    from inspect_ai.solver import generate

    rng = random.Random(1)
    samples = []
    for i in range(20):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        samples.append(
            Sample(
                id=f"q{i:04d}",
                input=f"What is {a}+{b}? Answer with the number only.",
                target=str(a + b),
                metadata={"difficulty": rng.choice(["easy", "hard"])},
            )
        )
    answers = random.Random(2)
    outputs = [
        ModelOutput.from_content(
            model="mockllm/model",
            content=s.target if answers.random() < 0.8 else str(int(s.target) + answers.randint(1, 5)),
        )
        for s in samples
    ]
    task = Task(
        name="arith_small",
        dataset=MemoryDataset(samples, name="arith_small-data"),
        solver=[generate()],
        scorer=[match(numeric=True), includes()],
        epochs=1,
    )
    return task, outputs


TASKS = {"arith_small": arith_small}


def run_inspect(task_name: str, model_name: str, log_dir: Path) -> tuple[Path, str]:
    """Runs the task on the mock model; answers the log file and Inspect's status."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model
    from inspect_ai.model._providers import mockllm

    # The mock model counts tokens with a tokenizer it would download; count offline.
    async def count_text_tokens(self: Any, text: str) -> int:
        return max(1, len(text) // 4)

    mockllm.MockLLM.count_text_tokens = count_text_tokens  # type: ignore[method-assign]

    if model_name != "mockllm/model":
        raise ValueError(f"this example runs only on mockllm/model, not {model_name!r}")
    task, outputs = TASKS[task_name]()
    model = get_model("mockllm/model", custom_outputs=outputs)
    logs = inspect_eval(
        task,
        model=model,
        log_format="eval",
        log_dir=str(log_dir),
        display="none",
        max_connections=1,
    )
    log = logs[0]
    location = log.location
    path = Path(location[len("file://") :] if location.startswith("file://") else location)
    return path, str(log.status)


# --- Upload -------------------------------------------------------------------------


def upload_log(client: AuthenticatedClient, run_id: UUID, path: Path, accept_incomplete: bool) -> Imported:
    imported = call(
        import_log,
        run_id,
        client=client,
        body=File(payload=path.read_bytes(), file_name=path.name, mime_type="application/zip"),
        accept_incomplete=accept_incomplete,
    )
    assert isinstance(imported, Imported)
    return imported


# --- The run ------------------------------------------------------------------------


def work(args: argparse.Namespace) -> int:
    client = service_login(args.base_url, args.client_id, args.client_secret)
    say(f"logged in to {args.base_url} as service account {args.client_id}")

    claimed = call(
        claim_run,
        client=client,
        body=ClaimRequest(harness=HARNESS, lease_seconds=args.lease_seconds),
        expect=(200, 204),
    )
    if not isinstance(claimed, RunView):
        say("no queued run waits for the inspect harness")
        return 3
    run_id = claimed.id
    lease = claimed.lease
    say(f"claimed run {run_id} (status {claimed.status}, lease until {getattr(lease, 'expires_at', '?')})")

    config = claimed.config if isinstance(claimed.config, dict) else {}
    task_name = config.get("task", "arith_small")
    model_name = config.get("model", "mockllm/model")
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="jointeval-inspect-"))

    pulse = Heartbeat(client, run_id, args.lease_seconds)
    outcome = RunStatus.FAILED
    imported: Imported | None = None
    try:
        renewed = pulse.beat()
        say(f"heartbeat: lease renewed until {getattr(renewed.lease, 'expires_at', '?')}")
        if task_name not in TASKS:
            raise ValueError(f"this harness does not know the task {task_name!r}")
        with pulse:
            say(f"running Inspect task {task_name} on {model_name}")
            path, status = run_inspect(task_name, model_name, log_dir)
        if pulse.error is not None:
            raise pulse.error
        say(f"Inspect finished: {status}, log {path} ({path.stat().st_size} bytes)")
        imported = upload_log(client, run_id, path, accept_incomplete=status != "success")
        say(
            f"log imported: eval {imported.eval_id}, {imported.metrics} metrics, {imported.scores} scores, "
            f"{len(imported.deviations)} deviations"
        )
        if status == "success":
            outcome = RunStatus.SUCCEEDED
    finally:
        # Whatever happened, the run is not left leased: it is finished, failed if need be.
        finished = call(finish_run, run_id, client=client, body=FinishRequest(outcome=outcome))
        assert isinstance(finished, RunView)
        say(f"finished run {run_id}: {finished.status}")

    run = call(get_run, run_id, client=client)
    assert isinstance(run, RunView)
    metrics = call(get_metrics, run_id, client=client)
    assert isinstance(metrics, list)
    report = {
        "run_id": str(run.id),
        "status": str(run.status),
        "heartbeats": pulse.beats,
        "metrics_count": len(metrics),
        "metrics": [{"scorer": m.scorer, "metric": m.metric, "value": m.value} for m in metrics],
        "scores": imported.scores if imported else 0,
        "deviations": [d.to_dict() for d in run.deviations],
        "imported_log": run.imported_log.to_dict() if run.imported_log else None,
        "digest": run.digest if isinstance(run.digest, str) else None,
    }
    print(json.dumps(report, indent=2))
    say(f"run {run.id}: {run.status}, {len(metrics)} metrics, {len(run.deviations)} deviations")
    for d in run.deviations:
        say(f"  deviation {d.field}: protocol {d.protocol!r}, run {d.run!r}")
    return 0 if run.status == RunStatus.SUCCEEDED else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("JOINTEVAL_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--client-id", default=os.environ.get("JOINTEVAL_CLIENT_ID"))
    parser.add_argument("--client-secret", default=os.environ.get("JOINTEVAL_CLIENT_SECRET"))
    parser.add_argument("--lease-seconds", type=int, default=300, help="lease length, 10 to 3600 (default 300)")
    parser.add_argument("--log-dir", help="where Inspect writes its log (default: a new temporary folder)")
    args = parser.parse_args()
    args.base_url = args.base_url.rstrip("/")
    if not args.client_id or not args.client_secret:
        parser.error("give --client-id and --client-secret (or JOINTEVAL_CLIENT_ID and JOINTEVAL_CLIENT_SECRET)")
    try:
        sys.exit(work(args))
    except ApiError as e:
        sys.exit(f"inspect_worker: {e}")


if __name__ == "__main__":
    main()

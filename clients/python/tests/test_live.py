"""The package against a live service: a real `inspect eval` on Inspect's mock model with
the hook enabled, and the command line. What the service holds afterwards is compared,
value for value, with the log as Inspect reads it."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from inspect_ai.log import EvalLog, read_eval_log

from conftest import Api, World

TASKS = Path(__file__).parent / "tasks"
BIN = Path(sys.executable).parent


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without anything of jointeval's but `extra`; a private config
    folder, so no saved session counts that the test did not make."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOINTEVAL_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env.update(extra)
    return env


def harness_env(world: World, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a harness signed in as the world's service account."""
    signed_in = {
        "JOINTEVAL_URL": world.url,
        "JOINTEVAL_CLIENT_ID": world.client_id,
        "JOINTEVAL_CLIENT_SECRET": world.client_secret,
    }
    return clean_env(tmp_path, **{**signed_in, **extra})


def inspect_eval(
    tmp_path: Path, env: dict[str, str], log_format: str = "eval"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    logs = tmp_path / "logs"
    done = subprocess.run(
        [
            str(BIN / "inspect"),
            "eval",
            "hooked.py",
            "--model",
            "mockllm/model",
            "--log-dir",
            str(logs),
            "--log-format",
            log_format,
            "--display",
            "plain",
        ],
        cwd=TASKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    written = sorted(logs.glob(f"*.{log_format}"))
    assert len(written) == 1, f"inspect eval wrote {written}: {done.stdout}\n{done.stderr}"
    return done, written[0]


def cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "jointeval-cli"), *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def log_metrics(log: EvalLog) -> set[tuple[str, str, float]]:
    assert log.results is not None
    return {(s.name, key, m.value) for s in log.results.scores for key, m in s.metrics.items()}


def log_scores(log: EvalLog) -> set[tuple[str, int, str, Any]]:
    assert log.samples is not None
    return {
        (str(sample.id), sample.epoch, scorer, score.value)
        for sample in log.samples
        for scorer, score in (sample.scores or {}).items()
    }


def assert_run_holds(api: Api, run_id: str, path: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """The run's metrics and scores are the log's, exactly; its log is the file, byte for
    byte (through the command line's download and export)."""
    log = read_eval_log(str(path))
    metrics = api.call("GET", f"/v1/runs/{run_id}/metrics")
    assert {(m["scorer"], m["metric"], m["value"]) for m in metrics} == log_metrics(log)
    exported = cli(tmp_path, env, "export", run_id, "-o", "scores.ndjson")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in (tmp_path / "scores.ndjson").read_text().splitlines()]
    assert {(s["sample_id"], s["epoch"], s["scorer"], s["value"]) for s in lines} == log_scores(log)
    assert len(lines) == 12 * 2
    assert not any("answer" in s for s in lines), "the results export holds no transcript"
    with_transcripts = cli(tmp_path, env, "export", run_id, "--transcripts", "-o", "transcripts.ndjson")
    assert with_transcripts.returncode == 0, with_transcripts.stderr
    full = [json.loads(line) for line in (tmp_path / "transcripts.ndjson").read_text().splitlines()]
    assert [(s["sample_id"], s["epoch"], s["scorer"], s["value"]) for s in full] == [
        (s["sample_id"], s["epoch"], s["scorer"], s["value"]) for s in lines
    ]
    assert log.samples is not None
    assert {(s["sample_id"], s["epoch"], s["scorer"], s["answer"]) for s in full} == {
        (str(sample.id), sample.epoch, scorer, score.answer)
        for sample in log.samples
        for scorer, score in (sample.scores or {}).items()
    }
    downloaded = cli(tmp_path, env, "download", run_id, "-o", "copy.eval")
    assert downloaded.returncode == 0, downloaded.stderr
    assert (tmp_path / "copy.eval").read_bytes() == path.read_bytes()


def test_the_hook_uploads_into_a_claimed_run_and_finishes_it(world: World, tmp_path: Path) -> None:
    run_id = world.queue_run()
    claimed = world.harness.call("POST", "/v1/runs/claim", json={"harness": "inspect", "lease_seconds": 60})
    assert claimed["id"] == run_id
    env = harness_env(
        world,
        tmp_path,
        JOINTEVAL_RUN=run_id,
    )
    done, path = inspect_eval(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert f"imported into run {run_id}" in done.stderr, done.stderr
    run = world.harness.call("GET", f"/v1/runs/{run_id}")
    assert run["status"] == "succeeded"
    assert run["imported_log"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run["deviations"] == []
    assert_run_holds(world.harness, run_id, path, tmp_path, env)
    # The other institute's viewer sees nothing of the unreleased run.
    world.uk_viewer.api.call("GET", f"/v1/runs/{run_id}", expect=404)
    listed = world.uk_viewer.api.call("GET", f"/v1/exercises/{world.exercise}/runs")
    assert run_id not in {r["id"] for r in listed["items"]}


def test_the_hook_registers_a_run_in_an_exercise_once(world: World, tmp_path: Path) -> None:
    env = harness_env(
        world,
        tmp_path,
        JOINTEVAL_EXERCISE=world.exercise,
        JOINTEVAL_PROTOCOL=world.protocol,
        JOINTEVAL_PROTOCOL_VERSION="1",
    )
    before = {r["id"] for r in world.harness.call("GET", f"/v1/exercises/{world.exercise}/runs?limit=100")["items"]}
    done, path = inspect_eval(tmp_path, env)
    assert done.returncode == 0, done.stderr
    after = world.harness.call("GET", f"/v1/exercises/{world.exercise}/runs?limit=100")["items"]
    new = [r for r in after if r["id"] not in before]
    assert len(new) == 1, new
    run = new[0]
    assert run["status"] == "succeeded"
    assert run["config"] == {"task": "hooked", "model": "mockllm/model"}
    assert f"registered as run {run['id']}" in done.stderr, done.stderr
    assert_run_holds(world.harness, run["id"], path, tmp_path, env)
    # The same log uploaded again (a retry) makes no second run.
    again = cli(
        tmp_path,
        env,
        "upload",
        "--exercise",
        world.exercise,
        "--protocol",
        world.protocol,
        "--protocol-version",
        "1",
        str(path),
    )
    assert again.returncode == 0, again.stderr
    assert f"registered as run {run['id']} (registered before)" in again.stdout
    runs = world.harness.call("GET", f"/v1/exercises/{world.exercise}/runs?limit=100")["items"]
    assert len(runs) == len(after)


def test_the_evaluation_succeeds_and_keeps_its_log_when_the_service_is_down(world: World, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = harness_env(
        world,
        tmp_path,
        JOINTEVAL_URL=f"http://127.0.0.1:{port}",
        JOINTEVAL_RUN="00000000-0000-0000-0000-000000000000",
        JOINTEVAL_RETRIES="1",
    )
    done, path = inspect_eval(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert read_eval_log(str(path)).status == "success"
    said = done.stdout + done.stderr
    assert "the log was not uploaded" in said and str(path) in said, said
    assert "jointeval-cli upload --run 00000000-0000-0000-0000-000000000000" in said


def test_a_refused_upload_says_why_and_fails_nothing(world: World, tmp_path: Path) -> None:
    # A run that is queued, not running, takes no log: the service's reason is said.
    run_id = world.queue_run()
    env = harness_env(
        world,
        tmp_path,
        JOINTEVAL_RUN=run_id,
    )
    done, path = inspect_eval(tmp_path, env)
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert "import_log answered 409" in said, said
    run = world.harness.call("GET", f"/v1/runs/{run_id}")
    assert run["status"] == "queued" and run.get("imported_log") is None
    world.harness.call("POST", f"/v1/runs/{run_id}/cancel", json={})


def test_the_command_line_signs_a_person_in_and_lists_what_they_may_see(world: World, tmp_path: Path) -> None:
    env = clean_env(tmp_path, JOINTEVAL_PASSWORD=world.author.password)
    login = cli(tmp_path, env, "--url", world.url, "login", "--email", world.author.email)
    assert login.returncode == 0, login.stderr
    session = tmp_path / "config" / "jointeval" / "session.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert world.author.password not in session.read_text()
    listed = cli(tmp_path, env, "--json", "exercises", "--status", "active")
    assert listed.returncode == 0, listed.stderr
    assert world.exercise in {e["id"] for e in json.loads(listed.stdout)}
    run_id = world.queue_run()
    runs = cli(tmp_path, env, "runs", world.exercise)
    assert runs.returncode == 0 and run_id in runs.stdout, runs.stderr
    # The UK viewer, signed in the same way, does not see the US run.
    uk_env = clean_env(tmp_path / "uk", JOINTEVAL_PASSWORD=world.uk_viewer.password)
    (tmp_path / "uk").mkdir()
    assert cli(tmp_path, uk_env, "--url", world.url, "login", "--email", world.uk_viewer.email).returncode == 0
    uk_runs = cli(tmp_path, uk_env, "--json", "runs", world.exercise)
    assert uk_runs.returncode == 0, uk_runs.stderr
    assert run_id not in {r["id"] for r in json.loads(uk_runs.stdout)}
    hidden = cli(tmp_path, uk_env, "download", run_id)
    assert hidden.returncode == 1 and "answered 404" in hidden.stderr
    # Signed out, nothing is listed.
    assert cli(tmp_path, env, "logout").returncode == 0
    refused = cli(tmp_path, env, "--url", world.url, "exercises")
    assert refused.returncode == 2 and "login" in refused.stderr
    world.author.api.call("POST", f"/v1/runs/{run_id}/cancel", json={})


def test_a_folder_of_logs_uploads_each_and_a_wrong_password_is_refused(world: World, tmp_path: Path) -> None:
    env = harness_env(
        world,
        tmp_path,
    )
    folder = tmp_path / "logs"
    # Two new logs, one of each format, written with the hook off (no target set).
    for log_format in ("eval", "json"):
        _, path = inspect_eval(tmp_path / log_format, env, log_format)
        folder.mkdir(exist_ok=True)
        path.rename(folder / path.name)
    (folder / "notes.json").write_text('{"not": "a log"}')
    done = cli(
        tmp_path,
        env,
        "upload",
        "--exercise",
        world.exercise,
        "--protocol",
        world.protocol,
        "--protocol-version",
        "1",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("registered as run") == 2, done.stdout
    wrong = cli(
        tmp_path,
        clean_env(tmp_path, JOINTEVAL_PASSWORD="not the password"),
        "--url",
        world.url,
        "login",
        "--email",
        world.author.email,
    )
    assert wrong.returncode == 1 and "answered 401" in wrong.stderr

"""jointeval-cli: sign in, list exercises and runs, upload Inspect logs, download a run's
log, export its scores.

    jointeval-cli login --url https://jointeval.example --email ada@aisi.gov.uk
    jointeval-cli exercises
    jointeval-cli runs EXERCISE
    jointeval-cli upload --run RUN logs/2026-12-01T10-00-00_task.eval
    jointeval-cli upload --exercise EXERCISE --protocol PROTOCOL --protocol-version 1 logs/
    jointeval-cli download RUN -o run.eval
    jointeval-cli export RUN --format csv -o scores.csv

The service and the caller come from `login`'s saved session, or from JOINTEVAL_URL with
JOINTEVAL_CLIENT_ID and JOINTEVAL_CLIENT_SECRET (a service account) or JOINTEVAL_TOKEN.
Exit status: 0 done, 1 refused or failed, 2 a usage error, 3 the service out of reach.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from .client import ApiError, Client, Unavailable
from .settings import Connection, save_session, session_file
from .uploads import Target, upload

T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        sys.exit(args.command(args))
    except ApiError as e:
        sys.exit(f"jointeval-cli: {e}")
    except Unavailable as e:
        print(f"jointeval-cli: {e}", file=sys.stderr)
        sys.exit(3)
    except Usage as e:
        parser.error(str(e))


class Usage(Exception):
    """A command given what it cannot work with."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jointeval-cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the service (default: JOINTEVAL_URL, or the saved session's)")
    parser.add_argument("--json", action="store_true", help="print the service's answers as JSON")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    login = commands.add_parser("login", help="sign in and save the session (a token, never the password)")
    who = login.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="a person: the password is asked, or taken from JOINTEVAL_PASSWORD")
    who.add_argument(
        "--client-id", help="a service account: the secret is asked, or taken from JOINTEVAL_CLIENT_SECRET"
    )
    login.set_defaults(command=_login)

    commands.add_parser("logout", help="forget the saved session").set_defaults(command=_logout)
    commands.add_parser("whoami", help="who the service takes you for").set_defaults(command=_whoami)

    exercises = commands.add_parser("exercises", help="the exercises you may see")
    exercises.add_argument("--status", choices=["planned", "active", "completed", "cancelled"])
    exercises.set_defaults(command=_exercises)

    runs = commands.add_parser("runs", help="an exercise's runs that you may see")
    runs.add_argument("exercise")
    runs.set_defaults(command=_runs)

    up = commands.add_parser("upload", help="upload Inspect logs: a file, or every log in a folder")
    up.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    target = up.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="a running run to import one log into")
    target.add_argument("--exercise", help="an exercise to register a run in for each log")
    up.add_argument("--protocol", help="with --exercise: the protocol the logs ran")
    up.add_argument("--protocol-version", type=int, help="with --exercise: its version")
    up.add_argument("--institute", help="with --exercise: the executing institute, if you evaluate for several")
    up.add_argument("--finish", action="store_true", help="with --run: finish the run after the import")
    up.add_argument(
        "--accept-incomplete",
        action="store_true",
        help="take a log whose status is not `success` (its run then ends `failed`)",
    )
    up.set_defaults(command=_upload)

    down = commands.add_parser("download", help="a run's Inspect log, byte for byte")
    down.add_argument("run")
    down.add_argument("-o", "--output", type=Path, help="where to write it (default: <run>.eval or <run>.json)")
    down.set_defaults(command=_download)

    export = commands.add_parser("export", help="a run's per-sample scores")
    export.add_argument("run")
    export.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    export.add_argument(
        "--transcripts",
        action="store_true",
        help="with each score's answer, explanation and metadata (where they were released to you)",
    )
    export.add_argument("-o", "--output", type=Path, help="where to write them (default: standard output)")
    export.set_defaults(command=_export)
    return parser


def _connect(args: argparse.Namespace) -> Client:
    connection = Connection.from_env(args.url)
    if connection is None:
        raise Usage("no service: give --url, set JOINTEVAL_URL, or `jointeval-cli login` first")
    if not (connection.token or connection.client_id):
        raise Usage(f"not signed in to {connection.url}: `jointeval-cli login` first")
    return connection.client()


def _print(args: argparse.Namespace, value: Any, lines: Iterable[str]) -> None:
    if args.json:
        print(json.dumps(value, indent=2))
    else:
        for line in lines:
            print(line)


def _login(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("JOINTEVAL_URL")
    if not url:
        raise Usage("give --url or set JOINTEVAL_URL")
    with Client(url) as client:
        if args.email:
            password = os.environ.get("JOINTEVAL_PASSWORD") or getpass.getpass(f"password for {args.email}: ")
            answer = client.login_person(args.email, password)
            who = args.email
        else:
            secret = os.environ.get("JOINTEVAL_CLIENT_SECRET") or getpass.getpass(f"secret of {args.client_id}: ")
            answer = client.login_service(args.client_id, secret)
            who = args.client_id
        me = client.me()
    path = save_session(client.base_url, answer["access_token"], answer["expires_in"], who)
    note = (
        " (a one-time password: change it before anything else, POST /v1/me/password)"
        if me["must_change_password"]
        else ""
    )
    print(
        f"signed in to {client.base_url} as {who} of {me['home_institute']}{note}; the session, "
        f"good for {answer['expires_in']} s, is in {path}"
    )
    return 0


def _logout(args: argparse.Namespace) -> int:
    session_file().unlink(missing_ok=True)
    print("signed out")
    return 0


def _whoami(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        me = client.me()
    account = me["account"]
    _print(args, me, [f"{account.get('email') or account.get('display_name')} of {me['home_institute']}"])
    return 0


def _exercises(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        items = list(client.exercises(status=args.status))
    _print(args, items, (f"{e['id']}  {e['status']:<9}  {e['title']}" for e in items))
    return 0


def _runs(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        items = list(client.runs(args.exercise))
    _print(
        args,
        items,
        (
            f"{r['id']}  {r['status']:<9}  {r['institute']:<4}  {r['harness']['name']}  {r['model_version']}"
            for r in items
        ),
    )
    return 0


def logs_in(paths: Iterable[Path]) -> list[Path]:
    """The logs named, a folder standing for the Inspect logs in it (`.eval` archives, and
    `.json` files that begin as an Inspect log does), in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and _is_log(p))
        elif path.is_file():
            found.append(path)
        else:
            raise Usage(f"{path}: no such file or folder")
    return found


def _is_log(path: Path) -> bool:
    if path.suffix == ".eval":
        return True
    if path.suffix != ".json":
        return False
    with path.open("rb") as f:
        start = f.read(256).lstrip()
    return start.startswith(b"{") and b'"version"' in start


def _upload(args: argparse.Namespace) -> int:
    logs = logs_in(args.paths)
    if not logs:
        raise Usage("no Inspect logs there")
    if args.run and len(logs) > 1:
        raise Usage(f"a run takes one log, and {len(logs)} were given: use --exercise to register a run for each")
    if args.exercise and not (args.protocol and args.protocol_version):
        raise Usage("--exercise needs --protocol and --protocol-version")
    target = Target(
        run=args.run,
        finish=args.finish,
        exercise=args.exercise,
        protocol=args.protocol,
        protocol_version=args.protocol_version,
        institute=args.institute,
    )
    failed = 0
    with _connect(args) as client:
        for path in logs:
            try:
                print(upload(client, target, path, args.accept_incomplete))
            except ApiError as e:
                failed += 1
                print(f"jointeval-cli: {path}: {e}", file=sys.stderr)
    return 1 if failed else 0


def _write_whole(output: Path, write: Callable[[IO[bytes]], T]) -> T:
    """Writes `output` through `<output>.part`, renamed once complete and removed if not,
    so that a file by that name is always whole."""
    part = output.with_name(output.name + ".part")
    try:
        with part.open("wb") as f:
            done = write(f)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(output)
    return done


def _download(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        run = client.run(args.run)
        log = run.get("imported_log")
        if not log:
            raise Usage(f"run {args.run} holds no log")
        output = args.output or Path(f"{args.run}.{log['format']}")
        _, sha256 = _write_whole(output, lambda f: client.download_log(args.run, f))
    print(f"{output}: eval {log['eval_id']}, sha256 {sha256}")
    return 0


def _export(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        if args.output is None:
            client.export_scores(args.run, sys.stdout.buffer, args.format, args.transcripts)
            sys.stdout.flush()
        else:
            _write_whole(args.output, lambda f: client.export_scores(args.run, f, args.format, args.transcripts))
    return 0

"""Where a log goes, and its upload: shared by the hook and the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .client import Client


@dataclass(frozen=True)
class Target:
    """Where a task's log goes."""

    run: str | None = None
    finish: bool = True
    exercise: str | None = None
    protocol: str | None = None
    protocol_version: int | None = None
    institute: str | None = None

    @staticmethod
    def from_env() -> Target | None:
        env = os.environ
        if env.get("JOINTEVAL_RUN"):
            return Target(run=env["JOINTEVAL_RUN"], finish=env.get("JOINTEVAL_FINISH", "1") != "0")
        if env.get("JOINTEVAL_EXERCISE"):
            version = env.get("JOINTEVAL_PROTOCOL_VERSION", "")
            return Target(
                exercise=env["JOINTEVAL_EXERCISE"],
                protocol=env.get("JOINTEVAL_PROTOCOL"),
                protocol_version=int(version) if version.isdigit() else None,
                institute=env.get("JOINTEVAL_INSTITUTE") or None,
            )
        return None

    def problem(self) -> str | None:
        """What is missing, for an exercise target."""
        if self.exercise and not (self.protocol and self.protocol_version):
            return "JOINTEVAL_EXERCISE needs JOINTEVAL_PROTOCOL and JOINTEVAL_PROTOCOL_VERSION (a number)"
        return None


def log_path(location: str) -> Path:
    return Path(location[len("file://") :] if location.startswith("file://") else location)


def upload(client: Client, target: Target, path: Path, incomplete: bool = False) -> str:
    """Uploads one log where `target` says (one whose status is not `success` when
    `incomplete`); answers what happened, in a sentence."""
    if target.run:
        imported = client.import_log(target.run, path, accept_incomplete=incomplete)
        done = f"log {path.name} {'was imported before into' if imported['replayed'] else 'imported into'} run {target.run}"
        done += (
            f": {imported['metrics']} metrics, {imported['scores']} scores, {len(imported['deviations'])} deviations"
        )
        if target.finish:
            finished = client.finish(target.run, "failed" if incomplete else "succeeded")
            done += f"; run {finished['status']}"
        return done
    assert target.exercise and target.protocol and target.protocol_version
    created = client.create_from_log(
        target.exercise,
        path,
        target.protocol,
        target.protocol_version,
        institute=target.institute,
        accept_incomplete=incomplete,
    )
    run, imported = created["run"], created["import"]
    again = " (registered before)" if imported["replayed"] else ""
    return (
        f"log {path.name} registered as run {run['id']}{again} in exercise {target.exercise}: {run['status']}, "
        f"{imported['metrics']} metrics, {imported['scores']} scores, {len(imported['deviations'])} deviations"
    )

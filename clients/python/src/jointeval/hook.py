"""An Inspect hook that uploads each task's log to jointeval when the task ends.

Inspect imports this module through the package's `inspect_ai` entry point; the hook is
enabled when the environment names the service and where the log goes:

- `JOINTEVAL_URL`, and a way to sign in: `JOINTEVAL_CLIENT_ID` and
  `JOINTEVAL_CLIENT_SECRET` (a service account), `JOINTEVAL_TOKEN`, or the session
  `jointeval-cli login` saved;
- either `JOINTEVAL_RUN`, a running run (one the harness claimed or started): the log is
  imported into it and the run finished (`JOINTEVAL_FINISH=0` leaves it running), its
  lease renewed while the task runs;
- or `JOINTEVAL_EXERCISE` with `JOINTEVAL_PROTOCOL` and `JOINTEVAL_PROTOCOL_VERSION`
  (and `JOINTEVAL_INSTITUTE` for someone who evaluates for several): a finished run is
  registered in the exercise from the log.

An upload is retried while the service is away or busy (`JOINTEVAL_RETRIES`, default 4)
and is safe to repeat: the same log again changes nothing. The evaluation never fails
because of the hook: when the upload does not succeed it says why, and the log stays
where Inspect wrote it, to be uploaded later with `jointeval-cli upload`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from pathlib import Path

from inspect_ai.hooks import Hooks, TaskEnd, TaskStart, hooks

from .client import ApiError, Client, Retry
from .settings import Connection
from .uploads import Target, log_path, upload

logger = logging.getLogger("jointeval")


def say(message: str) -> None:
    print(f"jointeval: {message}", file=sys.stderr, flush=True)


class Lease:
    """Renews a run's lease every third of its length while a task runs; stops quietly
    when the run holds no lease of this caller (a run started by hand has none)."""

    def __init__(self, client: Client, run_id: str, seconds: int) -> None:
        self.client, self.run_id, self.seconds = client, run_id, seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="jointeval-lease", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                self.client.heartbeat(self.run_id, self.seconds)
            except ApiError as e:
                logger.debug("no lease to renew on run %s: %s", self.run_id, e)
                return
            except Exception as e:  # the upload at the end reports an unreachable service
                logger.debug("lease of run %s not renewed: %s", self.run_id, e)
            self.stopped.wait(self.seconds / 3)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.client.close()


@hooks(name="jointeval", description="Uploads each task's log to jointeval when the task ends")
class UploadLogs(Hooks):
    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}

    def enabled(self) -> bool:
        return Target.from_env() is not None and Connection.from_env() is not None

    def _client(self) -> Client:
        connection = Connection.from_env()
        assert connection is not None
        retries = os.environ.get("JOINTEVAL_RETRIES", "4")
        return connection.client(Retry(attempts=int(retries) if retries.isdigit() else 4))

    async def on_task_start(self, data: TaskStart) -> None:
        target = Target.from_env()
        if target is None or target.run is None:
            return
        seconds = os.environ.get("JOINTEVAL_LEASE_SECONDS", "300")
        try:
            client = await asyncio.to_thread(self._client)
        except Exception as e:
            say(f"the lease of run {target.run} is not renewed: {e}")
            return
        self.leases[data.eval_id] = Lease(client, target.run, int(seconds) if seconds.isdigit() else 300)

    async def on_task_end(self, data: TaskEnd) -> None:
        lease = self.leases.pop(data.eval_id, None)
        if lease is not None:
            await asyncio.to_thread(lease.stop)
        target = Target.from_env()
        if target is None:
            return
        path = log_path(data.log.location)
        try:
            if (missing := target.problem()) is not None:
                raise ValueError(missing)
            message = await asyncio.to_thread(self._upload, target, path, data.log.status != "success")
            say(message)
        except Exception as e:  # never the evaluation's failure: said, and the log kept
            where = (
                f"--run {target.run}"
                if target.run
                else (
                    f"--exercise {target.exercise} --protocol {target.protocol} "
                    f"--protocol-version {target.protocol_version}"
                )
            )
            say(
                f"the log was not uploaded ({e}); it stays at {path}. "
                f"Upload it later with: jointeval-cli upload {where} {path}"
            )

    def _upload(self, target: Target, path: Path, incomplete: bool) -> str:
        with self._client() as client:
            return upload(client, target, path, incomplete)

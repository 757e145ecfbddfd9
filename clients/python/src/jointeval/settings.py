"""Where the service is and who calls it: from the environment, or the session that
`jointeval-cli login` saved."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import Client, Retry


def session_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jointeval" / "session.json"


def save_session(url: str, token: str, expires_in: int, who: str) -> Path:
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = {"url": url, "access_token": token, "expires_at": int(time.time()) + expires_in, "who": who}
    # Created private: the token is as good as a password until it expires.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    return path


def load_session() -> dict[str, Any] | None:
    """The saved session, if there is one and it has not expired."""
    try:
        record: dict[str, Any] = json.loads(session_file().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("expires_at", 0) <= time.time() + 30:
        return None
    return record


@dataclass(frozen=True)
class Connection:
    """How to call the service: its URL and one way of signing in."""

    url: str
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    @staticmethod
    def from_env(url: str | None = None) -> Connection | None:
        """JOINTEVAL_URL with JOINTEVAL_CLIENT_ID and JOINTEVAL_CLIENT_SECRET (a service
        account), or JOINTEVAL_TOKEN; else the saved session (for its URL, or any URL
        when none is set). None when nothing says where the service is."""
        env = os.environ
        url = url or env.get("JOINTEVAL_URL")
        if url and env.get("JOINTEVAL_CLIENT_ID") and env.get("JOINTEVAL_CLIENT_SECRET"):
            return Connection(url, client_id=env["JOINTEVAL_CLIENT_ID"], client_secret=env["JOINTEVAL_CLIENT_SECRET"])
        if url and env.get("JOINTEVAL_TOKEN"):
            return Connection(url, token=env["JOINTEVAL_TOKEN"])
        session = load_session()
        if session and (url is None or session["url"].rstrip("/") == url.rstrip("/")):
            return Connection(session["url"], token=session["access_token"])
        return Connection(url) if url else None

    def client(self, retry: Retry | None = None, timeout: float = 300.0) -> Client:
        client = Client(self.url, token=self.token, retry=retry, timeout=timeout)
        if self.client_id and self.client_secret:
            client.login_service(self.client_id, self.client_secret)
        return client

"""A thin typed client of jointeval's HTTP API.

Every call names the contract's operation (its `operationId` in openapi.yaml) and goes
through `OPERATIONS`, the one table of methods, paths, query parameters, body types and
success statuses this package uses. `tests/test_contract.py` checks that table, and the
shapes below, against openapi.yaml: a path, a parameter or a field the contract does not
have fails the package's tests, not a user's upload.
"""

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import httpx
from typing_extensions import NotRequired, TypedDict

# --- What the service answers (the contract's schemas, as far as this package reads them)


class Problem(TypedDict):
    """An RFC 9457 problem: every refusal of the service."""

    type: str
    title: str
    status: int
    detail: str
    errors: NotRequired[list[dict[str, str]]]


class TokenResponse(TypedDict):
    access_token: str
    token_type: str
    expires_in: int
    scope: NotRequired[str | None]


class Deviation(TypedDict):
    field: str
    protocol: str
    run: str


class RunView(TypedDict):
    id: str
    exercise_id: str
    protocol_id: str
    protocol_version: int
    institute: str
    harness: dict[str, str]
    config: Any
    model_version: str
    status: str
    created_by: str
    created_at: str
    updated_by: str
    updated_at: str
    released_to: list[str]
    deviations: list[Deviation]
    digest: NotRequired[str | None]
    started_at: NotRequired[str | None]
    finished_at: NotRequired[str | None]
    lease: NotRequired[dict[str, Any] | None]
    imported_log: NotRequired[dict[str, Any] | None]


class ExerciseView(TypedDict):
    id: str
    title: str
    model: dict[str, Any]
    lead_institute: str
    participants: list[str]
    protocol_versions: list[dict[str, Any]]
    starts_at: str
    ends_at: str
    status: str


class Imported(TypedDict):
    """What an import did."""

    eval_id: str
    format: str
    sha256: str
    metrics: int
    scores: int
    reductions: int
    samples: int
    unscored_scores: int
    errored_samples: int
    replayed: bool
    deviations: list[Deviation]


# `import` is a keyword, hence the functional form.
CreatedFromLog = TypedDict("CreatedFromLog", {"run": RunView, "import": Imported})


class MetricValue(TypedDict):
    scorer: str
    metric: str
    value: float
    name: NotRequired[str | None]
    unscored_count: NotRequired[int | None]


class Me(TypedDict):
    account: dict[str, Any]
    home_institute: str
    roles: list[dict[str, Any]]
    must_change_password: bool


#: The contract's schema each shape above stands for, which the tests compare them with.
SCHEMAS: dict[str, type] = {
    "Problem": Problem,
    "TokenResponse": TokenResponse,
    "Deviation": Deviation,
    "RunView": RunView,
    "ExerciseView": ExerciseView,
    "Imported": Imported,
    "CreatedFromLog": CreatedFromLog,
    "MetricValue": MetricValue,
    "Me": Me,
}


# --- The operations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    #: The statuses that are an answer, not a refusal.
    ok: tuple[int, ...] = (200,)
    query: tuple[str, ...] = ()
    #: Request body media types this package sends.
    body: tuple[str, ...] = ()


OPERATIONS: dict[str, Operation] = {
    "token": Operation("POST", "/v1/auth/token", body=("application/json",)),
    "me": Operation("GET", "/v1/me"),
    "list_exercises": Operation("GET", "/v1/exercises", query=("status", "limit", "cursor")),
    "get_exercise": Operation("GET", "/v1/exercises/{id}"),
    "list_runs": Operation("GET", "/v1/exercises/{id}/runs", query=("limit", "cursor")),
    "get_run": Operation("GET", "/v1/runs/{id}"),
    "heartbeat": Operation("POST", "/v1/runs/{id}/heartbeat", body=("application/json",)),
    "finish_run": Operation("POST", "/v1/runs/{id}/finish", body=("application/json",)),
    "get_metrics": Operation("GET", "/v1/runs/{id}/metrics"),
    "import_log": Operation(
        "POST",
        "/v1/runs/{id}/inspect-log",
        query=("accept_incomplete",),
        body=("application/json", "application/zip"),
    ),
    "create_from_log": Operation(
        "POST",
        "/v1/exercises/{id}/runs/inspect-log",
        ok=(200, 201),
        query=("protocol_id", "protocol_version", "institute", "accept_incomplete"),
        body=("application/json", "application/zip"),
    ),
    "download_log": Operation("GET", "/v1/runs/{id}/inspect-log"),
    "export_samples": Operation("GET", "/v1/runs/{id}/export", query=("format", "transcripts")),
}

#: Answers worth another try: the service or the way to it is busy or briefly away.
RETRYABLE = frozenset({429, 502, 503, 504})


class ApiError(RuntimeError):
    """The service refused a call: its status and problem body."""

    def __init__(self, operation: str, status: int, problem: Problem | None, text: str = "") -> None:
        self.operation = operation
        self.status = status
        self.problem = problem
        what = f"{problem['title']}: {problem['detail']}" if problem else text[:500]
        super().__init__(f"{operation} answered {status}: {what}")


class Unavailable(RuntimeError):
    """The service could not be reached, or stayed busy, through every retry."""


def media_type(path: Path) -> str:
    """The media type a log is sent as: an `.eval` archive or a JSON log."""
    return "application/zip" if path.suffix == ".eval" else "application/json"


def log_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(1 << 20):
        yield chunk


@dataclass
class Retry:
    """How often and how long to try again when the service is away or busy."""

    attempts: int = 4
    first_wait: float = 1.0
    max_wait: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def wait(self, attempt: int, retry_after: str | None) -> None:
        wait = min(self.max_wait, self.first_wait * 2**attempt)
        if retry_after and retry_after.isdigit():
            wait = min(self.max_wait, max(wait, float(retry_after)))
        self.sleep(wait)


class Client:
    """The API, as one caller: a bearer token, or a service account's credentials (from
    which a new token is fetched when the old one expires)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        retry: Retry | None = None,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._token = token
        self._credentials = (client_id, client_secret) if client_id and client_secret else None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Signing in -------------------------------------------------------------------

    def login_service(self, client_id: str, client_secret: str, scope: str | None = None) -> TokenResponse:
        body: dict[str, str] = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        if scope:
            body["scope"] = scope
        answer = cast(TokenResponse, self._json("token", json=body, authorized=False))
        self._token = answer["access_token"]
        self._credentials = (client_id, client_secret)
        return answer

    def login_person(self, email: str, password: str) -> TokenResponse:
        body = {"grant_type": "password", "username": email, "password": password}
        answer = cast(TokenResponse, self._json("token", json=body, authorized=False))
        self._token = answer["access_token"]
        return answer

    @property
    def token(self) -> str | None:
        return self._token

    # --- Reading ----------------------------------------------------------------------

    def me(self) -> Me:
        return cast(Me, self._json("me"))

    def exercises(self, status: str | None = None) -> Iterator[ExerciseView]:
        for item in self._pages("list_exercises", query={"status": status}):
            yield cast(ExerciseView, item)

    def exercise(self, exercise_id: str) -> ExerciseView:
        return cast(ExerciseView, self._json("get_exercise", id=exercise_id))

    def runs(self, exercise_id: str) -> Iterator[RunView]:
        for item in self._pages("list_runs", id=exercise_id):
            yield cast(RunView, item)

    def run(self, run_id: str) -> RunView:
        return cast(RunView, self._json("get_run", id=run_id))

    def metrics(self, run_id: str) -> list[MetricValue]:
        return cast(list[MetricValue], self._json("get_metrics", id=run_id))

    def download_log(self, run_id: str, to: IO[bytes]) -> tuple[str, str]:
        """Writes the run's log to `to`; answers its media type and sha256, checked against
        the service's `ETag`."""
        with self._stream("download_log", id=run_id) as response:
            digest = hashlib.sha256()
            for chunk in response.iter_bytes():
                digest.update(chunk)
                to.write(chunk)
            etag = response.headers.get("etag", "").strip('"')
            kind = response.headers.get("content-type", "").split(";")[0]
        if etag and etag != digest.hexdigest():
            raise ApiError("download_log", 200, None, f"the log's sha256 {digest.hexdigest()} is not its ETag {etag}")
        return kind, digest.hexdigest()

    def export_scores(self, run_id: str, to: IO[bytes], format: str = "ndjson", transcripts: bool = False) -> None:
        query = {"format": format, **({"transcripts": "true"} if transcripts else {})}
        with self._stream("export_samples", id=run_id, query=query) as response:
            for chunk in response.iter_bytes():
                to.write(chunk)

    # --- Writing ----------------------------------------------------------------------

    def heartbeat(self, run_id: str, lease_seconds: int) -> RunView:
        return cast(RunView, self._json("heartbeat", id=run_id, json={"lease_seconds": lease_seconds}))

    def finish(self, run_id: str, outcome: str) -> RunView:
        return cast(RunView, self._json("finish_run", id=run_id, json={"outcome": outcome}))

    def import_log(self, run_id: str, path: Path, accept_incomplete: bool = False) -> Imported:
        """Uploads a log into a running run. The same log again answers what the first
        upload did (`replayed`), so a retry is safe."""
        return cast(
            Imported,
            self._json("import_log", id=run_id, query={"accept_incomplete": accept_incomplete}, upload=path),
        )

    def create_from_log(
        self,
        exercise_id: str,
        path: Path,
        protocol_id: str,
        protocol_version: int,
        institute: str | None = None,
        accept_incomplete: bool = False,
    ) -> CreatedFromLog:
        """Registers a finished run in an exercise from a log. The same log again answers
        the run it made, so a retry makes no second run."""
        query = {
            "protocol_id": protocol_id,
            "protocol_version": protocol_version,
            "institute": institute,
            "accept_incomplete": accept_incomplete,
        }
        return cast(CreatedFromLog, self._json("create_from_log", id=exercise_id, query=query, upload=path))

    # --- The calls --------------------------------------------------------------------

    def _json(
        self,
        operation: str,
        *,
        id: str | None = None,
        query: Mapping[str, object] | None = None,
        json: object = None,
        upload: Path | None = None,
        authorized: bool = True,
    ) -> Any:
        response = self._send(operation, id=id, query=query, json=json, upload=upload, authorized=authorized)
        return response.json()

    def _pages(
        self, operation: str, *, id: str | None = None, query: Mapping[str, object] | None = None
    ) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            page = self._json(operation, id=id, query={**(query or {}), "cursor": cursor, "limit": 100})
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _stream(self, operation: str, *, id: str | None = None, query: Mapping[str, object] | None = None) -> Any:
        request = self._request(operation, id=id, query=query, json=None, upload=None, authorized=True)
        response = self._http.send(request, stream=True)
        if response.status_code not in OPERATIONS[operation].ok:
            response.read()
            response.close()
            raise self._refusal(operation, response)
        return _Closing(response)

    def _request(
        self,
        operation: str,
        *,
        id: str | None,
        query: Mapping[str, object] | None,
        json: object,
        upload: tuple[Path, IO[bytes]] | None,
        authorized: bool,
    ) -> httpx.Request:
        op = OPERATIONS[operation]
        unknown = set(query or {}) - set(op.query)
        if unknown:
            raise ValueError(f"{operation} takes no query parameter {sorted(unknown)}")
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None and v is not False}
        path = op.path.replace("{id}", id) if id is not None else op.path
        headers: dict[str, str] = {"accept": "application/json, application/problem+json"}
        if authorized and self._token:
            headers["authorization"] = f"Bearer {self._token}"
        if upload is not None:
            log, body = upload
            headers["content-type"] = media_type(log)
            headers["content-length"] = str(log.stat().st_size)
            return self._http.build_request(op.method, path, params=params, headers=headers, content=_chunks(body))
        return self._http.build_request(op.method, path, params=params, headers=headers, json=json)

    def _send(
        self,
        operation: str,
        *,
        id: str | None,
        query: Mapping[str, object] | None,
        json: object,
        upload: Path | None,
        authorized: bool,
    ) -> httpx.Response:
        refreshed = False
        attempt = 0
        while True:
            try:
                if upload is not None:
                    with upload.open("rb") as body:
                        request = self._request(
                            operation, id=id, query=query, json=json, upload=(upload, body), authorized=authorized
                        )
                        response = self._http.send(request)
                else:
                    request = self._request(
                        operation, id=id, query=query, json=json, upload=None, authorized=authorized
                    )
                    response = self._http.send(request)
            except httpx.TransportError as e:
                if attempt >= self.retry.attempts:
                    raise Unavailable(f"{operation}: {self.base_url} is out of reach: {e}") from e
                self.retry.wait(attempt, None)
                attempt += 1
                continue
            if response.status_code in OPERATIONS[operation].ok:
                return response
            if response.status_code == 401 and authorized and self._credentials and not refreshed:
                # An expired token: a service account signs in again, once.
                self.login_service(*self._credentials)
                refreshed = True
                continue
            if response.status_code in RETRYABLE:
                if attempt >= self.retry.attempts:
                    raise Unavailable(f"{operation}: the service stayed busy: {self._refusal(operation, response)}")
                self.retry.wait(attempt, response.headers.get("retry-after"))
                attempt += 1
                continue
            raise self._refusal(operation, response)

    @staticmethod
    def _refusal(operation: str, response: httpx.Response) -> ApiError:
        problem: Problem | None = None
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            try:
                problem = cast(Problem, response.json())
            except ValueError:
                problem = None
        return ApiError(operation, response.status_code, problem, response.text)


class _Closing:
    """A streamed response, closed when its `with` ends."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def __enter__(self) -> httpx.Response:
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def _query_value(value: object) -> str:
    if value is True:
        return "true"
    return str(value)

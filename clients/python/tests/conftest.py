"""A live service for the tests that need one, and a world in it: US and UK staff, a
protocol both approved, an active exercise on it, and a US service account for the
harness. The service is the one at JOINTEVAL_TEST_URL (`scripts/ci-python-client` starts
it), whose admins have the passwords JOINTEVAL_ADMIN_PASSWORD_US and _UK. Without it the
live tests are skipped, unless JOINTEVAL_TEST_REQUIRE_LIVE=1 (CI), when they fail."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

DATASET = {"name": "hooked-data", "version": "1", "sha256": None, "sample_count": 12}
PROTOCOL_CONTENT: dict[str, Any] = {
    "objective": "The Python package's live tests",
    "tasks": [
        {
            "name": "Hooked",
            "dataset": DATASET,
            "harness": {"name": "inspect", "task_ref": "hooked"},
            "scorers": ["includes", "match"],
            "metrics": ["accuracy"],
            "epochs": 1,
        }
    ],
    "metrics": [{"name": "accuracy", "higher_is_better": True, "threshold": None}],
}


class Api:
    """Raw calls, for setting up and for reading what the package did."""

    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)
        self.url = url

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def login(self, email: str, password: str) -> Api:
        answer = self.call(
            "POST", "/v1/auth/token", json={"grant_type": "password", "username": email, "password": password}
        )
        return Api(self.url, answer["access_token"])


@dataclass
class Person:
    email: str
    password: str
    api: Api


@dataclass
class World:
    url: str
    us_admin: Api
    author: Person
    uk_viewer: Person
    exercise: str
    protocol: str
    client_id: str
    client_secret: str

    @property
    def harness(self) -> Api:
        answer = Api(self.url).call(
            "POST",
            "/v1/auth/token",
            json={"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret},
        )
        return Api(self.url, answer["access_token"])

    def queue_run(self) -> str:
        run = self.author.api.call(
            "POST",
            f"/v1/exercises/{self.exercise}/runs",
            expect=201,
            headers={"idempotency-key": secrets.token_hex(8)},
            json={
                "protocol_id": self.protocol,
                "protocol_version": 1,
                "harness": {"name": "inspect", "version": "0.3.285"},
                "config": {"task": "hooked", "model": "mockllm/model"},
                "model_version": "mockllm/model",
            },
        )
        return str(run["id"])


def person(admin: Api, email: str, roles: list[str]) -> Person:
    created = admin.call(
        "POST", "/v1/accounts", expect=201, json={"kind": "person", "email": email, "display_name": email}
    )
    for role in roles:
        admin.call("POST", f"/v1/accounts/{created['account']['id']}/memberships", expect=201, json={"role": role})
    first = Api(admin.url).login(email, created["one_time_password"])
    password = secrets.token_urlsafe(18)
    first.call(
        "POST",
        "/v1/me/password",
        expect=204,
        json={"current_password": created["one_time_password"], "new_password": password},
    )
    return Person(email, password, Api(admin.url).login(email, password))


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    url = os.environ.get("JOINTEVAL_TEST_URL")
    if not url:
        if os.environ.get("JOINTEVAL_TEST_REQUIRE_LIVE") == "1":
            pytest.fail("JOINTEVAL_TEST_URL is not set, and the live tests are required")
        pytest.skip("no live service: set JOINTEVAL_TEST_URL (see scripts/ci-python-client)")
    anonymous = Api(url)
    us = anonymous.login("admin@us.jointeval.invalid", os.environ["JOINTEVAL_ADMIN_PASSWORD_US"])
    uk = anonymous.login("admin@uk.jointeval.invalid", os.environ["JOINTEVAL_ADMIN_PASSWORD_UK"])
    tag = secrets.token_hex(3)
    author = person(us, f"author-{tag}@us.jointeval.invalid", ["author", "evaluator"])
    us_reviewer = person(us, f"reviewer-{tag}@us.jointeval.invalid", ["reviewer"])
    uk_reviewer = person(uk, f"reviewer-{tag}@uk.jointeval.invalid", ["reviewer"])
    uk_viewer = person(uk, f"viewer-{tag}@uk.jointeval.invalid", ["viewer"])
    protocol = author.api.call(
        "POST",
        "/v1/protocols",
        expect=201,
        json={"slug": f"hooked-{tag}", "title": "Hooked", "risk_area": "other", "participants": ["US", "UK"]},
    )
    draft = author.api.call(
        "POST", f"/v1/protocols/{protocol['id']}/versions", expect=201, json={"content": PROTOCOL_CONTENT}
    )
    submitted = author.api.call("POST", f"/v1/protocols/{protocol['id']}/versions/{draft['number']}/submit")
    for reviewer in (us_reviewer, uk_reviewer):
        reviewer.api.call(
            "POST",
            f"/v1/protocols/{protocol['id']}/versions/{draft['number']}/reviews",
            expect=201,
            json={"verdict": "approve"},
            headers={"if-match": f'"{submitted["content_sha256"]}"'},
        )
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    exercise = us.call(
        "POST",
        "/v1/exercises",
        expect=201,
        json={
            "title": f"Hooked {tag}",
            "model": {"provider": "Inspect", "name": "mockllm", "version": "model", "access": "public_api"},
            "protocol_versions": [{"protocol_id": protocol["id"], "number": draft["number"]}],
            "participants": ["US", "UK"],
            "starts_at": now.isoformat(),
            "ends_at": (now + dt.timedelta(days=7)).isoformat(),
        },
    )
    for admin in (us, uk):
        path = f"/v1/exercises/{exercise['id']}"
        read = admin.http.get(path)
        assert read.status_code == 200, read.text
        admin.call("POST", f"{path}/agree", json={}, headers={"if-match": read.headers["etag"]})
    harness = us.call(
        "POST",
        "/v1/accounts",
        expect=201,
        json={
            "kind": "service",
            "display_name": f"Hooked harness {tag}",
            "scopes": ["runs:execute", "runs:write", "results:write", "runs:read", "exercises:read"],
        },
    )
    us.call("POST", f"/v1/accounts/{harness['account']['id']}/memberships", expect=201, json={"role": "evaluator"})
    yield World(
        url=url,
        us_admin=us,
        author=author,
        uk_viewer=uk_viewer,
        exercise=exercise["id"],
        protocol=protocol["id"],
        client_id=harness["client_id"],
        client_secret=harness["client_secret"],
    )

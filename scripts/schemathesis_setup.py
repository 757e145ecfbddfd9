#!/usr/bin/env python3
"""Sets up a fresh jointeval service for scripts/schemathesis, through the API alone.

As the bootstrapped admins of US and UK (passwords from JOINTEVAL_ADMIN_PASSWORD_US and
JOINTEVAL_ADMIN_PASSWORD_UK), over plain HTTP with the standard library, it makes:

1. at each institute an author, a reviewer, an evaluator and a viewer (persons, each
   with that one role and a password of their own), and at US a service account with
   every scope and the evaluator role;
2. a protocol led by US with UK taking part: version 1 approved by a reviewer of each,
   version 2 left a draft;
3. an exercise on version 1, agreed by both admins (active);
4. runs of it: one by US that succeeded with metrics and per-sample scores and was
   released to UK, one by US still running with scores, one by UK that succeeded with
   scores (unreleased), and one by US waiting in the queue for a harness;
5. an exchange of the US viewer to UK, proposed by the US admin.

It prints one JSON object: {"tokens": {"admin-US": TOKEN, ...}, "ids": {...}}. Every
role's access token is fresh; the service must be started with a token lifetime longer
than the whole fuzzing run (--token-ttl). With --dictionaries FILE it also writes the
ids as schemathesis.toml settings: a dictionary of real ids per kind of object, bound to
the `id` path parameter of that kind's operations, so that a share of the generated
requests reach real objects rather than 404 (a random UUID names nothing).

    python schemathesis_setup.py --base-url http://127.0.0.1:8080 [--dictionaries FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from typing import Any

INSTITUTES = ("US", "UK")
ROLES = ("author", "reviewer", "evaluator", "viewer")
TIMEOUT = 30.0

PROTOCOL_CONTENT: dict[str, Any] = {
    "objective": "Arithmetic: the fuzzing run's fixture",
    "tasks": [
        {
            "name": "Arithmetic",
            "dataset": {"name": "arith_small-data", "version": "1", "sha256": None, "sample_count": 20},
            "harness": {"name": "inspect", "task_ref": "arith_small"},
            "scorers": ["match", "includes"],
            "metrics": ["accuracy"],
            "epochs": 1,
        }
    ],
    "metrics": [{"name": "accuracy", "higher_is_better": True, "threshold": None}],
}


class ApiError(RuntimeError):
    pass


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        expect: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Any:
        data = None
        request_headers = {"accept": "application/json", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            request_headers["content-type"] = "application/json"
        if token is not None:
            request_headers["authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=request_headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                status, content = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, content = e.code, e.read()
        if status != expect:
            raise ApiError(f"{method} {path} answered {status} (expected {expect}): {content.decode(errors='replace')}")
        return json.loads(content) if content else None

    def login(self, **form: str) -> str:
        return self.call("POST", "/v1/auth/token", body=form)["access_token"]

    def etag(self, path: str, token: str) -> str:
        """The ETag of what `path` answers `token` now (an agreement binds to it)."""
        request = urllib.request.Request(
            self.base_url + path, method="GET", headers={"authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return str(response.headers["etag"])


def new_person(api: Api, admin: str, code: str, role: str, suffix: str) -> tuple[str, str]:
    """A person of the admin's institute holding `role`: (account id, access token)."""
    email = f"{role}-{suffix}@{code.lower()}.jointeval.invalid"
    created = api.call(
        "POST",
        "/v1/accounts",
        admin,
        {"kind": "person", "email": email, "display_name": f"Fuzzing {role} {code}"},
        expect=201,
    )
    account_id = created["account"]["id"]
    api.call("POST", f"/v1/accounts/{account_id}/memberships", admin, {"role": role}, expect=201)
    first = api.login(grant_type="password", username=email, password=created["one_time_password"])
    password = secrets.token_urlsafe(24)
    api.call(
        "POST",
        "/v1/me/password",
        first,
        {"current_password": created["one_time_password"], "new_password": password},
        expect=204,
    )
    return account_id, api.login(grant_type="password", username=email, password=password)


def scores(count: int) -> list[dict[str, Any]]:
    return [
        {"sample_id": str(i), "epoch": 1, "scorer": scorer, "value": float(i % 2), "answer": str(i)}
        for i in range(count)
        for scorer in ("match", "includes")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--dictionaries", help="write the ids as schemathesis.toml settings to this file")
    args = parser.parse_args()
    api = Api(args.base_url)
    suffix = secrets.token_hex(3)

    tokens: dict[str, str] = {}
    accounts: dict[str, str] = {}
    for code in INSTITUTES:
        password = os.environ.get(f"JOINTEVAL_ADMIN_PASSWORD_{code}")
        if not password:
            raise SystemExit(f"set JOINTEVAL_ADMIN_PASSWORD_{code} to the {code} admin's password")
        tokens[f"admin-{code}"] = api.login(
            grant_type="password", username=f"admin@{code.lower()}.jointeval.invalid", password=password
        )
        for role in ROLES:
            accounts[f"{role}-{code}"], tokens[f"{role}-{code}"] = new_person(
                api, tokens[f"admin-{code}"], code, role, suffix
            )

    service = api.call(
        "POST",
        "/v1/accounts",
        tokens["admin-US"],
        {
            "kind": "service",
            "display_name": f"Fuzzing harness {suffix}",
            "scopes": [
                "protocols:read",
                "exercises:read",
                "runs:read",
                "runs:write",
                "runs:execute",
                "results:read",
                "results:write",
            ],
        },
        expect=201,
    )
    accounts["service"] = service["account"]["id"]
    api.call(
        "POST", f"/v1/accounts/{accounts['service']}/memberships", tokens["admin-US"], {"role": "evaluator"}, expect=201
    )
    tokens["service"] = api.login(
        grant_type="client_credentials", client_id=service["client_id"], client_secret=service["client_secret"]
    )

    # The protocol: version 1 approved by both institutes, version 2 a draft.
    protocol = api.call(
        "POST",
        "/v1/protocols",
        tokens["author-US"],
        {"slug": f"fuzz-arith-{suffix}", "title": "Fuzzing fixture", "risk_area": "other", "participants": ["US", "UK"]},
        expect=201,
    )
    protocol_id = protocol["id"]
    v1 = api.call(
        "POST", f"/v1/protocols/{protocol_id}/versions", tokens["author-US"], {"content": PROTOCOL_CONTENT}, expect=201
    )
    submitted = api.call("POST", f"/v1/protocols/{protocol_id}/versions/{v1['number']}/submit", tokens["author-US"])
    # A review is bound to the content's hash, as the submission answered it.
    for code in INSTITUTES:
        api.call(
            "POST",
            f"/v1/protocols/{protocol_id}/versions/{v1['number']}/reviews",
            tokens[f"reviewer-{code}"],
            {"verdict": "approve"},
            expect=201,
            headers={"if-match": f'"{submitted["content_sha256"]}"'},
        )
    api.call(
        "POST", f"/v1/protocols/{protocol_id}/versions", tokens["author-UK"], {"content": PROTOCOL_CONTENT}, expect=201
    )

    # The exercise, agreed by both: active.
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    exercise = api.call(
        "POST",
        "/v1/exercises",
        tokens["admin-US"],
        {
            "title": f"Fuzzing exercise {suffix}",
            "model": {"provider": "Example", "name": "example-large", "version": "1", "access": "public_api"},
            "protocol_versions": [{"protocol_id": protocol_id, "number": v1["number"]}],
            "participants": ["US", "UK"],
            "starts_at": now.isoformat(),
            "ends_at": (now + dt.timedelta(days=7)).isoformat(),
        },
        expect=201,
    )
    exercise_id = exercise["id"]
    for code in INSTITUTES:
        admin = tokens[f"admin-{code}"]
        read = api.etag(f"/v1/exercises/{exercise_id}", admin)
        api.call("POST", f"/v1/exercises/{exercise_id}/agree", admin, {}, headers={"if-match": read})

    def new_run(token: str, key: str) -> str:
        run = api.call(
            "POST",
            f"/v1/exercises/{exercise_id}/runs",
            token,
            {
                "protocol_id": protocol_id,
                "protocol_version": v1["number"],
                "harness": {"name": "inspect", "version": "0.3.285"},
                "config": {"task": "arith_small"},
                "model_version": "example-large-1",
            },
            expect=201,
            headers={"idempotency-key": f"{key}-{suffix}"},
        )
        return run["id"]

    def with_results(token: str, run_id: str, count: int) -> None:
        api.call("POST", f"/v1/runs/{run_id}/start", token)
        api.call("POST", f"/v1/runs/{run_id}/samples", token, scores(count))
        api.call(
            "POST",
            f"/v1/runs/{run_id}/metrics",
            token,
            {"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.5, "stderr": 0.1, "sample_count": count}]},
        )

    runs: dict[str, str] = {}
    runs["released"] = new_run(tokens["evaluator-US"], "released")
    with_results(tokens["evaluator-US"], runs["released"], 20)
    finished = api.call("POST", f"/v1/runs/{runs['released']}/finish", tokens["evaluator-US"], {"outcome": "succeeded"})
    # A release is bound to the results' digest, as the finish answered it.
    api.call(
        "POST",
        f"/v1/runs/{runs['released']}/release",
        tokens["reviewer-US"],
        {},
        headers={"if-match": f'"{finished["digest"]}"'},
    )
    runs["running"] = new_run(tokens["evaluator-US"], "running")
    with_results(tokens["evaluator-US"], runs["running"], 10)
    runs["uk"] = new_run(tokens["evaluator-UK"], "uk")
    with_results(tokens["evaluator-UK"], runs["uk"], 10)
    api.call("POST", f"/v1/runs/{runs['uk']}/finish", tokens["evaluator-UK"], {"outcome": "succeeded"})
    runs["queued"] = new_run(tokens["evaluator-US"], "queued")

    exchange = api.call(
        "POST",
        "/v1/exchanges",
        tokens["admin-US"],
        {
            "account_id": accounts["viewer-US"],
            "home_institute": "US",
            "host_institute": "UK",
            "roles": ["viewer"],
            "starts_at": now.isoformat(),
            "ends_at": (now + dt.timedelta(days=30)).isoformat(),
        },
        expect=201,
    )

    admins = {code: api.call("GET", "/v1/me", tokens[f"admin-{code}"])["account"]["id"] for code in INSTITUTES}
    memberships = [
        m["id"]
        for key, account_id in accounts.items()
        for m in api.call(
            "GET", f"/v1/accounts/{account_id}/memberships", tokens["admin-UK" if key.endswith("-UK") else "admin-US"]
        )
    ]
    if args.dictionaries:
        write_dictionaries(
            args.dictionaries,
            {
                "accounts": [*accounts.values(), *admins.values()],
                "memberships": memberships,
                "exchanges": [exchange["id"]],
                "protocols": [protocol_id],
                "versions": [v1["number"], v1["number"] + 1],
                "exercises": [exercise_id],
                "runs": list(runs.values()),
            },
        )

    print(
        json.dumps(
            {
                "tokens": tokens,
                "ids": {
                    "accounts": accounts,
                    "protocol": protocol_id,
                    "exercise": exercise_id,
                    "runs": runs,
                    "exchange": exchange["id"],
                },
            },
            indent=2,
        )
    )


# Which operations take which kind of id in their path, by path prefix.
ID_BINDINGS = {
    "accounts": "^/v1/accounts/\\{id\\}",
    "exchanges": "^/v1/exchanges/\\{id\\}",
    "protocols": "^/v1/protocols/\\{id\\}",
    "exercises": "^/v1/exercises/\\{id\\}",
    "runs": "^/v1/runs/\\{id\\}",
}


def write_dictionaries(path: str, ids: dict[str, list[Any]]) -> None:
    """schemathesis.toml settings: one dictionary per kind of id, and each operation's
    path parameters drawn from it half of the time (the other half stays random, so
    unknown ids are still tried)."""
    lines = ["# Written by scripts/schemathesis_setup.py: the ids of the objects it made.", ""]
    for name, values in ids.items():
        lines.append(f"[dictionaries.{name}]")
        lines.append(f"values = {json.dumps(values)}")
        lines.append("")
    for name, regex in ID_BINDINGS.items():
        lines.append("[[operations]]")
        lines.append(f"include-path-regex = '{regex}'")
        bindings = [f'"path.id" = {{ dictionary = "{name}", probability = 0.5 }}']
        if name == "accounts":
            bindings.append('"path.membership_id" = { dictionary = "memberships", probability = 0.5 }')
        if name == "protocols":
            bindings.append('"path.number" = { dictionary = "versions", probability = 0.5 }')
        lines.append(f"parameters = {{ {', '.join(bindings)} }}")
        lines.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except ApiError as e:
        sys.exit(f"schemathesis_setup: {e}")

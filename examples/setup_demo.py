#!/usr/bin/env python3
"""Prepares a jointeval service for the example partner tool: one queued Inspect run.

As the bootstrapped admins of US and UK, through the client generated from
openapi.yaml, it sets up everything a queued run needs. Nobody grants their own roles,
so the admins create the people who do the work:

1. a US author who is also an evaluator, a US reviewer and a UK reviewer (persons,
   who replace their one-time passwords at once);
2. a protocol led by US with UK taking part, whose version 1 describes the task the
   worker runs (`arith_small`: 20 sums, scorers `match` and `includes`, 1 epoch),
   written and submitted by the author and approved by both reviewers (whoever edits
   a version may not review it);
3. an exercise on that version, planned by the US admin and agreed by both admins,
   which makes it active;
4. a run of it registered by the author for the `inspect` harness, which waits in the
   queue; its config names the task and the model, so only a log of those is taken;
5. a service account for the harness, with the evaluator role at US and the scopes
   runs:execute, runs:write, results:write and runs:read.

It prints one JSON object: base_url, client_id, client_secret, run_id (and the ids of
what it made). The client secret is shown this once; keep it like a password.

    python setup_demo.py --base-url http://127.0.0.1:8080

The admins' passwords come from JOINTEVAL_ADMIN_PASSWORD_US and
JOINTEVAL_ADMIN_PASSWORD_UK (set them when the service first starts, so that it
bootstraps the admins with them). Names carry a random suffix, so it can run again
against the same service.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sys
from typing import Any

try:
    from jointeval_client import AuthenticatedClient, Client
    from jointeval_client.api.accounts import create_account, grant_membership
    from jointeval_client.api.auth import token
    from jointeval_client.api.exercises import agree, create_exercise, get_exercise
    from jointeval_client.api.me import change_password, me
    from jointeval_client.api.protocols import create_draft, create_protocol, review_version, submit_version
    from jointeval_client.api.runs import create_run
    from jointeval_client.models import (
        AccountKind,
        AgreeRequest,
        CreatedAccount,
        ExerciseView,
        GrantRequest,
        Me,
        NewAccountRequest,
        NewDraftRequest,
        NewProtocolRequest,
        NewRunRequest,
        PasswordChange,
        PlanRequest,
        Problem,
        ProtocolContent,
        ProtocolView,
        ReviewOutcome,
        ReviewRequest,
        RiskArea,
        Role,
        RunView,
        Scope,
        TokenRequest,
        TokenResponse,
        Verdict,
        VersionView,
    )
except ImportError as e:
    sys.exit(f"cannot import the generated client ({e}); generate it first: see examples/README.md")

# The task the example worker runs, as the protocol describes it. The worker's log must
# match it, or the import records deviations.
TASK_NAME = "arith_small"
PROTOCOL_CONTENT: dict[str, Any] = {
    "objective": "Arithmetic: the example partner tool's smoke test",
    "tasks": [
        {
            "name": "Arithmetic",
            "dataset": {"name": "arith_small-data", "version": "1", "sha256": None, "sample_count": 20},
            "harness": {"name": "inspect", "task_ref": TASK_NAME},
            "scorers": ["match", "includes"],
            "metrics": ["accuracy"],
            "epochs": 1,
        }
    ],
    "metrics": [{"name": "accuracy", "higher_is_better": True, "threshold": None}],
}
HARNESS_SCOPES = [Scope.RUNSEXECUTE, Scope.RUNSWRITE, Scope.RESULTSWRITE, Scope.RUNSREAD]
INSPECT_VERSION = "0.3.285"
TIMEOUT = 60.0


class ApiError(RuntimeError):
    """A call answered another status than the one expected."""


def call(endpoint: Any, *args: Any, expect: int = 200, **kwargs: Any) -> Any:
    """Calls a generated endpoint's `sync_detailed`; answers the parsed body, typed."""
    response = endpoint.sync_detailed(*args, **kwargs)
    if response.status_code != expect:
        name = endpoint.__name__.rsplit(".", 1)[-1]
        body = response.parsed
        detail = json.dumps(body.to_dict()) if isinstance(body, Problem) else response.content.decode(errors="replace")
        raise ApiError(f"{name} answered {int(response.status_code)} (expected {expect}): {detail}")
    return response.parsed


def login(base_url: str, request: TokenRequest) -> AuthenticatedClient:
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True, timeout=TIMEOUT)
    answer = call(token, client=anonymous, body=request)
    assert isinstance(answer, TokenResponse)
    return AuthenticatedClient(
        base_url=base_url, token=answer.access_token, raise_on_unexpected_status=True, timeout=TIMEOUT
    )


def login_person(base_url: str, email: str, password: str) -> AuthenticatedClient:
    return login(base_url, TokenRequest(grant_type="password", username=email, password=password))


def check_admin(client: AuthenticatedClient) -> None:
    caller = call(me, client=client)
    assert isinstance(caller, Me)
    if caller.must_change_password:
        raise SystemExit(
            f"{caller.account.email} still has a one-time password: change it first (POST /v1/me/password), "
            "or start the service for the first time with JOINTEVAL_ADMIN_PASSWORD_<CODE> set"
        )


def new_person(
    base_url: str, admin: AuthenticatedClient, email: str, name: str, roles: list[Role]
) -> AuthenticatedClient:
    """A person of the admin's institute with `roles`, logged in, with the one-time
    password already replaced by a random one (nobody needs it again)."""
    created = call(
        create_account,
        client=admin,
        body=NewAccountRequest(kind=AccountKind.PERSON, email=email, display_name=name),
        expect=201,
    )
    assert isinstance(created, CreatedAccount) and isinstance(created.one_time_password, str)
    for role in roles:
        call(grant_membership, created.account.id, client=admin, body=GrantRequest(role=role), expect=201)
    first = login_person(base_url, email, created.one_time_password)
    password = secrets.token_urlsafe(24)
    call(
        change_password,
        client=first,
        body=PasswordChange(current_password=created.one_time_password, new_password=password),
        expect=204,
    )
    return login_person(base_url, email, password)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("JOINTEVAL_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--us-admin", default="admin@us.jointeval.invalid")
    parser.add_argument("--uk-admin", default="admin@uk.jointeval.invalid")
    args = parser.parse_args()
    base_url = args.base_url.rstrip("/")
    passwords = {}
    for code in ("US", "UK"):
        variable = f"JOINTEVAL_ADMIN_PASSWORD_{code}"
        if not os.environ.get(variable):
            raise SystemExit(f"set {variable} to the {code} admin's password")
        passwords[code] = os.environ[variable]
    suffix = secrets.token_hex(3)

    us_admin = login_person(base_url, args.us_admin, passwords["US"])
    uk_admin = login_person(base_url, args.uk_admin, passwords["UK"])
    check_admin(us_admin)
    check_admin(uk_admin)
    # Nobody grants their own roles, so the work is done by people the admins create.
    us_author = new_person(
        base_url, us_admin, f"author-{suffix}@us.jointeval.invalid", "Example author", [Role.AUTHOR, Role.EVALUATOR]
    )
    us_reviewer = new_person(
        base_url, us_admin, f"reviewer-{suffix}@us.jointeval.invalid", "Example reviewer", [Role.REVIEWER]
    )
    uk_reviewer = new_person(
        base_url, uk_admin, f"reviewer-{suffix}@uk.jointeval.invalid", "Example reviewer", [Role.REVIEWER]
    )

    # The protocol, and its version 1 approved by a reviewer of each institute.
    protocol = call(
        create_protocol,
        client=us_author,
        body=NewProtocolRequest(
            slug=f"example-arith-{suffix}",
            title="Example: arithmetic smoke test",
            risk_area=RiskArea.OTHER,
            participants=["US", "UK"],
        ),
        expect=201,
    )
    assert isinstance(protocol, ProtocolView)
    draft = call(
        create_draft,
        protocol.id,
        client=us_author,
        body=NewDraftRequest(content=ProtocolContent.from_dict(PROTOCOL_CONTENT)),
        expect=201,
    )
    assert isinstance(draft, VersionView)
    submitted = call(submit_version, protocol.id, draft.number, client=us_author)
    assert isinstance(submitted, VersionView) and isinstance(submitted.content_sha256, str)
    for reviewer in (us_reviewer, uk_reviewer):
        # A review binds to the content as read: its hash, quoted, goes back as If-Match.
        outcome = call(
            review_version,
            protocol.id,
            draft.number,
            client=reviewer,
            body=ReviewRequest(verdict=Verdict.APPROVE),
            if_match=f'"{submitted.content_sha256}"',
            expect=201,
        )
        assert isinstance(outcome, ReviewOutcome)

    # The exercise, agreed by both institutes: active.
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    exercise = call(
        create_exercise,
        client=us_admin,
        body=PlanRequest.from_dict(
            {
                "title": f"Example joint test {suffix}",
                "model": {"provider": "Inspect", "name": "mockllm", "version": "model", "access": "public_api"},
                "protocol_versions": [{"protocol_id": str(protocol.id), "number": draft.number}],
                "participants": ["US", "UK"],
                "starts_at": now.isoformat(),
                "ends_at": (now + dt.timedelta(days=7)).isoformat(),
            }
        ),
        expect=201,
    )
    assert isinstance(exercise, ExerciseView)
    for admin in (us_admin, uk_admin):
        # An agreement binds to the plan as read: its ETag goes back as If-Match.
        read = get_exercise.sync_detailed(exercise.id, client=admin)
        exercise = call(agree, exercise.id, client=admin, body=AgreeRequest(), if_match=read.headers["etag"])
    assert isinstance(exercise, ExerciseView)

    # The run, queued for the `inspect` harness. Its config names the task and the model,
    # so the service refuses a log of anything else.
    run = call(
        create_run,
        exercise.id,
        client=us_author,
        body=NewRunRequest.from_dict(
            {
                "protocol_id": str(protocol.id),
                "protocol_version": draft.number,
                "harness": {"name": "inspect", "version": INSPECT_VERSION},
                "config": {"task": TASK_NAME, "model": "mockllm/model"},
                "model_version": "mockllm/model",
            }
        ),
        idempotency_key=f"example-run-{suffix}",
        expect=201,
    )
    assert isinstance(run, RunView)

    # The harness: a service account that may claim runs and write their results.
    harness = call(
        create_account,
        client=us_admin,
        body=NewAccountRequest(
            kind=AccountKind.SERVICE, display_name=f"Example Inspect runner {suffix}", scopes=HARNESS_SCOPES
        ),
        expect=201,
    )
    assert isinstance(harness, CreatedAccount)
    call(grant_membership, harness.account.id, client=us_admin, body=GrantRequest(role=Role.EVALUATOR), expect=201)

    print(
        json.dumps(
            {
                "base_url": base_url,
                "client_id": str(harness.client_id),
                "client_secret": harness.client_secret,
                "run_id": str(run.id),
                "run_status": str(run.status),
                "exercise_id": str(exercise.id),
                "exercise_status": str(exercise.status),
                "protocol_id": str(protocol.id),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    try:
        main()
    except ApiError as e:
        sys.exit(f"setup_demo: {e}")

"""Schemathesis hooks for scripts/schemathesis (loaded through `hooks` in its config).

POST /v1/runs/{id}/samples also takes `application/x-ndjson`: one JSON value per line,
whose schema in the contract is that of one line. Schemathesis has no serializer for
that media type and would error on the operation; this one writes the generated value
as one line of JSON (a list of values as one line each), so the NDJSON form of the
endpoint is fuzzed too.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    # The body's bytes: schemathesis sends what a serializer answers as the body (a
    # mapping would go out form-encoded, as `data=…`).
    if isinstance(value, bytes):
        return value
    lines = value if isinstance(value, list) else [value]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    """A case meant to be valid (positive data) is made so where the schema cannot say
    how: a cursor is opaque, so it starts at the first page; integers are written as
    integers; an Idempotency-Key is its own; text holds no NUL. Cases meant to be
    invalid keep what they drew, and its refusal stays fuzzed."""
    meta = getattr(case, "meta", None)
    positive = meta is not None and meta.generation.mode.is_positive
    if positive and case.query and "cursor" in case.query:
        case.query.pop("cursor")
    if positive and isinstance(case.body, (dict, list)):
        case.body = integral(case.body)
    if positive:
        # PostgreSQL's text holds no NUL, so text with one is refused (422
        # unstorable-text), a rule of the storage no schema states. Valid cases go
        # without; invalid ones keep theirs.
        case.query = without_nul(case.query)
        if isinstance(case.body, (dict, list, str)):
            case.body = without_nul(case.body)
    if positive and case.headers:
        # A key names one request: the same key with another body is rightly refused,
        # which no schema can say. A valid case's key is its own.
        for name in list(case.headers):
            if name.lower() == "idempotency-key":
                case.headers[name] = uuid.uuid4().hex
    return case


def without_nul(value: Any) -> Any:
    if isinstance(value, str):
        # A character in its place keeps the text's length (and it is not blank).
        return value.replace("\x00", "0")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def integral(value: Any) -> Any:
    """JSON Schema counts 1.0 as an integer; the service, like most typed clients, reads
    an integer field only when it is written as one. A valid case writes it so (invalid
    cases keep their floats, and their refusal stays fuzzed)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value

"""Schemathesis hooks for scripts/schemathesis (loaded through `hooks` in its config).

POST /v1/runs/{id}/samples also takes `application/x-ndjson`: one JSON value per line,
whose schema in the contract is that of one line. Schemathesis has no serializer for
that media type and would error on the operation; this one writes the generated value
as one line of JSON (a list of values as one line each), so the NDJSON form of the
endpoint is fuzzed too.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> dict[str, Any]:
    if isinstance(value, bytes):
        return {"data": value}
    lines = value if isinstance(value, list) else [value]
    return {"data": "".join(json.dumps(line) + "\n" for line in lines).encode()}

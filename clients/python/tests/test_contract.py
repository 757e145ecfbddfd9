"""The client's operations and shapes, checked against openapi.yaml: a path, a parameter,
a body type, a status or a field that the contract does not have fails here."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import typing_extensions
import yaml

from jointeval.client import OPERATIONS, SCHEMAS

CONTRACT = Path(os.environ.get("JOINTEVAL_OPENAPI", Path(__file__).parents[3] / "openapi.yaml"))


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONTRACT.read_text())
    return loaded


def resolve(contract: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = contract["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_operation_is_the_contracts(contract: dict[str, Any], name: str) -> None:
    op = OPERATIONS[name]
    path = contract["paths"].get(op.path)
    assert path is not None, f"{name}: the contract has no path {op.path}"
    operation = path.get(op.method.lower())
    assert operation is not None, f"{name}: the contract has no {op.method} {op.path}"
    assert operation["operationId"] == name
    parameters = [p for p in operation.get("parameters", []) if "$ref" not in p]
    declared = {p["name"] for p in parameters if p["in"] == "query"}
    assert set(op.query) <= declared, f"{name}: the contract has no query parameter {set(op.query) - declared}"
    required = {p["name"] for p in parameters if p["in"] == "query" and p.get("required")}
    assert required <= set(op.query), f"{name}: the client cannot send the required {required - set(op.query)}"
    path_names = {p["name"] for p in parameters if p["in"] == "path"}
    assert path_names == ({"id"} if "{id}" in op.path else set()), f"{name}: path parameters {path_names}"
    content = set(operation.get("requestBody", {}).get("content", {}))
    assert set(op.body) <= content, f"{name}: the contract takes no body of {set(op.body) - content}"
    if operation.get("requestBody", {}).get("required"):
        assert op.body, f"{name}: the contract requires a body the client does not send"
    statuses = {int(s) for s in operation["responses"] if s.isdigit()}
    assert set(op.ok) <= statuses, f"{name}: the contract never answers {set(op.ok) - statuses}"
    assert all(200 <= s < 300 for s in op.ok)


def annotation_types(annotation: Any) -> set[str]:
    """The JSON types a Python annotation admits."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(annotation_types(a) for a in typing.get_args(annotation)))
    base = origin or annotation
    if typing_extensions.is_typeddict(base) or base is dict:
        return {"object"}
    names = {str: {"string"}, int: {"integer"}, float: {"number", "integer"}, bool: {"boolean"}, list: {"array"}}
    if base is type(None):
        return {"null"}
    if base is Any:
        return {"any"}
    return names[base]


def schema_types(contract: dict[str, Any], node: dict[str, Any]) -> set[str]:
    for combined in ("oneOf", "anyOf"):
        if combined in node:
            return set().union(*(schema_types(contract, n) for n in node[combined]))
    if "allOf" in node:
        return set().union(*(schema_types(contract, n) for n in node["allOf"]))
    node = resolve(contract, node)
    if "type" not in node:
        return (
            {"any"}
            if "properties" not in node and "enum" not in node
            else {"object" if "properties" in node else "string"}
        )
    kind = node["type"]
    return set(kind) if isinstance(kind, list) else {kind}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_each_shape_is_the_contracts(contract: dict[str, Any], name: str) -> None:
    shape = SCHEMAS[name]
    schema = contract["components"]["schemas"][name]
    properties = schema["properties"]
    required = set(schema.get("required", []))
    hints = typing.get_type_hints(shape)
    for key, annotation in hints.items():
        assert key in properties, f"{name}.{key}: the contract has no such field"
        if key in shape.__required_keys__:  # type: ignore[attr-defined]
            assert key in required, f"{name}.{key}: the client counts on it, the contract may leave it out"
        admitted = annotation_types(annotation)
        promised = schema_types(contract, properties[key])
        if "any" not in admitted and "any" not in promised:
            assert promised <= admitted, f"{name}.{key}: the contract sends {promised}, the client reads {admitted}"

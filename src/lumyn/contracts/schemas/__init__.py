"""The v0 JSON Schemas shipped with the package and validators built once from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from lumyn.errors import RequestInvalid

REQUEST_SCHEMA = "decision_request.v0.schema.json"
RECORD_SCHEMA = "decision_record.v0.schema.json"
POLICY_SCHEMA = "policy.v0.schema.json"


@cache
def _schema_text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """A fresh copy each call: validator compilers rewrite `$ref`s in place."""
    schema: dict[str, Any] = json.loads(_schema_text(name))
    return schema


@cache
def _compiled(name: str) -> Callable[[Any], Any]:
    validator: Callable[[Any], Any] = fastjsonschema.compile(load_schema(name))
    return validator


def _pointer(error: fastjsonschema.JsonSchemaValueException) -> str:
    # fastjsonschema names the value "data.action.type" or "data.tags[2]".
    name = str(error.name or "data")
    path = name[len("data") :].replace("[", ".").replace("]", "")
    return path.lstrip(".") or "(root)"


def _message(error: fastjsonschema.JsonSchemaValueException) -> str:
    return str(error.message).replace(str(error.name), _pointer(error), 1)


@cache
def _request_validator() -> tuple[Callable[[Any], Any], dict[str, str]]:
    """The request validator, with context's "mode X requires property Y" conditions taken
    out and returned as {X: Y}: fastjsonschema evaluates `if` by raising and catching an
    exception, which cost a fifth of a decision's CPU when both conditions are false (the
    common case). validate_request applies them itself, with the schema's message."""
    schema = load_schema(REQUEST_SCHEMA)
    context = schema["properties"]["context"]
    needs: dict[str, str] = {}
    for clause in context.pop("allOf"):
        mode = clause["if"]["properties"]["mode"]["const"]
        (needs[mode],) = clause["then"]["required"]
    return fastjsonschema.compile(schema), needs


def validate_request(request: Any) -> None:
    """Raise RequestInvalid(INVALID_REQUEST_SCHEMA) naming the first offending field."""
    validator, needs = _request_validator()
    try:
        validator(request)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise RequestInvalid(_message(exc), field=_pointer(exc)) from None
    context = request["context"]
    need = needs.get(context["mode"])
    if need is not None and need not in context:
        raise RequestInvalid(f"context must contain ['{need}'] properties", field="context")


def validate_request_reference(request: Any) -> None:
    """The shipped schema applied whole, for tests that hold validate_request to it."""
    _compiled(REQUEST_SCHEMA)(request)


def validate_record(record: Any) -> None:
    """Raise ValueError if `record` is not a valid decision_record.v0 (request included)."""
    try:
        _compiled(RECORD_SCHEMA)(record)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ValueError(f"invalid decision record: {_message(exc)}") from None
    try:
        validate_request(record["request"])
    except RequestInvalid as exc:
        raise ValueError(f"invalid decision record: request.{exc.field}: {exc.message}") from None
    if record["verdict"] == "QUERY" and not record.get("queries"):
        raise ValueError("invalid decision record: a QUERY verdict must list queries")

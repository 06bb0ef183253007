"""The v0 JSON Schemas shipped with the package and validators built once from them."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

from lumyn.errors import RequestInvalid

REQUEST_SCHEMA = "decision_request.v0.schema.json"
RECORD_SCHEMA = "decision_record.v0.schema.json"
POLICY_SCHEMA = "policy.v0.schema.json"


@cache
def _schema_text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """A fresh copy each call: callers may keep or change it."""
    schema: dict[str, Any] = json.loads(_schema_text(name))
    return schema


@cache
def _compiled(name: str) -> Any:
    # jsonschema-rs: a compiled validator, about a fifth of the CPU of a generated Python one
    # per request (docs/benchmarks.md). It reads only Python's JSON types; anything else
    # goes to the reference validator below.
    return jsonschema_rs.validator_for(load_schema(name))


@cache
def _reference(name: str) -> Any:
    import jsonschema  # imported when needed: the CLI's reads start faster without it

    return jsonschema.Draft202012Validator(load_schema(name))


def _field(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(root)"


def _describe(kind: str, detail: Any) -> str:
    """What an error kind means, without repeating the offending value (it may be large)."""
    if kind == "required":
        return f"must contain '{detail}'"
    if kind in ("additionalProperties", "unevaluatedProperties"):
        return "must not contain " + ", ".join(f"'{k}'" for k in detail)
    if kind == "type":
        return "must be " + " or ".join(detail if isinstance(detail, list) else [detail])
    if kind == "enum":
        return "must be one of " + ", ".join(json.dumps(o) for o in detail)
    if kind == "const":
        return f"must be {json.dumps(detail)}"
    if kind == "pattern":
        return f"must match pattern {detail}"
    if kind == "minLength":
        return f"must be at least {detail} character(s) long"
    if kind == "maxLength":
        return f"must be at most {detail} characters long"
    return f"fails the schema's '{kind}' rule"


def _first_error(name: str, value: Any) -> tuple[str, str] | None:
    """(field, message) of the first way `value` breaks the schema, or None if it is valid."""
    validator = _compiled(name)
    try:
        # is_valid first: it skips building an error, half the cost of validate() on the
        # (common) valid request.
        if validator.is_valid(value):
            return None
        validator.validate(value)
        raise ValueError("is_valid and validate disagree")  # never seen: ask the reference
    except jsonschema_rs.ValidationError as exc:
        field, kind, detail = _field(exc.instance_path), exc.kind.name, exc.kind.value
    except ValueError:  # a type jsonschema-rs does not read (a str subclass, a date...)
        from jsonschema.exceptions import best_match

        try:
            error = best_match(_reference(name).iter_errors(value))
        except RecursionError:  # so deep that neither validator reaches the bottom
            return "(root)", "(root) nests too deeply to be validated"
        if error is None:
            return None
        field, kind, detail = _field(error.absolute_path), str(error.validator), None
        if kind == "required":  # the first required property the object lacks
            detail = next(p for p in error.validator_value if p not in error.instance)
        elif kind == "additionalProperties":
            detail = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        else:
            detail = error.validator_value
    return field, f"{field} {_describe(kind, detail)}"


def validate_request(request: Any) -> None:
    """Raise RequestInvalid(INVALID_REQUEST_SCHEMA) naming the first offending field."""
    error = _first_error(REQUEST_SCHEMA, request)
    if error is not None:
        raise RequestInvalid(error[1], field=error[0])


def validate_request_reference(request: Any) -> None:
    """The reference implementation (jsonschema) applied to a request, for tests that hold
    validate_request to it. Raises jsonschema.ValidationError."""
    _reference(REQUEST_SCHEMA).validate(request)


def validate_record(record: Any) -> None:
    """Raise ValueError if `record` is not a valid decision_record.v0 (request included)."""
    error = _first_error(RECORD_SCHEMA, record)
    if error is not None:
        raise ValueError(f"invalid decision record: {error[1]}")
    try:
        validate_request(record["request"])
    except RequestInvalid as exc:
        raise ValueError(f"invalid decision record: request.{exc.field}: {exc.message}") from None
    if record["verdict"] == "QUERY" and not record.get("queries"):
        raise ValueError("invalid decision record: a QUERY verdict must list queries")

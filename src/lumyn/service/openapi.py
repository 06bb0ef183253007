"""OpenAPI pieces: the shipped JSON Schemas, made self-contained for embedding."""

from __future__ import annotations

import copy
from typing import Any

from lumyn.contracts.schemas import POLICY_SCHEMA, RECORD_SCHEMA, REQUEST_SCHEMA, load_schema


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace local `#/$defs/x` references by their targets (the schemas are not recursive),
    and drop keys that only make sense at a document root."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(copy.deepcopy(defs[ref[len("#/$defs/"):]]))
            return {k: walk(v) for k, v in node.items() if k not in ("$schema", "$id", "$defs")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def request_schema() -> dict[str, Any]:
    return _inline(load_schema(REQUEST_SCHEMA))


def record_schema() -> dict[str, Any]:
    return _inline(load_schema(RECORD_SCHEMA))


def policy_schema() -> dict[str, Any]:
    return _inline(load_schema(POLICY_SCHEMA))


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["reason_code", "message"],
            "properties": {
                "reason_code": {"type": "string"},
                "field": {"type": ["string", "null"]},
                "message": {"type": "string"},
            },
        }
    },
}

EVENT_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "properties": {
        "type": {"enum": ["outcome", "label", "note", "override"]},
        "data": {
            "type": "object",
            "description": "for a label: {label: failure|success|near_miss, summary}",
        },
        "event_id": {
            "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
            "description": "optional; sending the same event again returns the stored one",
        },
    },
}

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "at", "type", "data"],
    "properties": {
        "event_id": {"type": "string"},
        "at": {"type": "string"},
        "type": {"enum": ["outcome", "label", "note", "override"]},
        "data": {"type": "object"},
    },
}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def responses(status: int, schema: dict[str, Any], *errors: int, ok: str = "OK") -> dict[str, Any]:
    out: dict[str, Any] = {
        str(status): {"description": ok,
                  "content": {"application/json": {"schema": schema}}}
    }
    for status in errors:
        out[str(status)] = {"description": _ERROR_TEXT[status],
                            "content": {"application/json": {"schema": ERROR_SCHEMA}}}
    return out


_ERROR_TEXT = {
    400: "Malformed JSON",
    401: "Missing or invalid signature or API key",
    403: "The API key's tenant may not act for this request's tenant",
    404: "No such decision (for this tenant)",
    409: "request_id already used for a different request",
    413: "Body larger than the configured limit",
    415: "Content-Type must be application/json",
    422: "Schema-invalid input (reason code and field in the body)",
    503: "Storage unavailable",
}

"""Turn a tool call's arguments into a DecisionRequest.

One mapping serves the MCP gateway (read from the map file) and `gate` (given in Python). A
value is a `$.a.b` path into the arguments, a Python callable taking the arguments, or a
literal. A path that finds nothing is *missing*: the key is left out of the request, so the
policy sees missing evidence (and can QUERY for it) instead of the call crashing.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lumyn.contracts.canonical import CanonicalizationError, plain_digest

REQUEST_SCHEMA = "decision_request.v0"
PATH_PREFIX = "$."


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def is_path(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PATH_PREFIX)


def path_problem(path: str) -> str | None:
    """Why `path` is not a usable `$.a.b` path, or None."""
    parts = path[len(PATH_PREFIX):].split(".")
    if not all(parts):
        return f"'{path}' is not a path: write $.name or $.name.inner (no empty parts)"
    return None


def read_path(arguments: Any, path: str) -> Any:
    """The value at `$.a.b` (a list index may be a number), or MISSING."""
    current = arguments
    for part in path[len(PATH_PREFIX):].split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current


def resolve(spec: Any, arguments: Mapping[str, Any]) -> Any:
    """A path's value, a callable's result, or the literal itself."""
    if callable(spec):
        return spec(arguments)
    if is_path(spec):
        return read_path(arguments, spec)
    return spec


def template_problem(template: str) -> str | None:
    """Why an intent template cannot be rendered, or None. Placeholders are `{name}` or
    `{name.inner}`, nothing else."""
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if not name or spec or conversion or path_problem(PATH_PREFIX + name):
                return f"placeholder {{{name}}} must be an argument name like {{order_id}}"
    except ValueError as exc:
        return f"not a valid template: {exc}"
    return None


def render_intent(template: str, arguments: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            value = read_path(arguments, PATH_PREFIX + name)
            parts.append("(missing)" if value is MISSING else str(value))
    return "".join(parts) or template


@dataclass(frozen=True)
class ToolRule:
    """How one tool's calls become DecisionRequests."""

    action_type: str
    intent: Any = None  # template string, callable, or None (a default naming the tool)
    amount: Any = None  # {"value": spec, "currency": spec}, a callable giving that, or None
    evidence: Any = field(default_factory=dict)  # {key: spec}, or a callable giving a dict
    request_id: Any = None  # spec for the request_id, or None
    target: Any = None  # {"system"|"resource_type"|"resource_id": spec}, or None

    def request(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        subject: Mapping[str, Any],
        *,
        tenant_id: str | None = None,
        request_id: str | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The DecisionRequest for one call. The context is the digest of the arguments."""
        action: dict[str, Any] = {"type": self.action_type, "intent": self._intent(tool, arguments)}
        amount = self._amount(arguments)
        if amount is not None:
            action["amount"] = amount
        target = self._target(arguments)
        if target:
            action["target"] = target
        request: dict[str, Any] = {
            "schema_version": REQUEST_SCHEMA,
            "subject": dict(subject),
            "action": action,
            "evidence": self._evidence(arguments),
            "context": {"mode": "digest_only", "digest": arguments_digest(arguments)},
        }
        given = self._request_id(arguments)
        if given is not None or request_id is not None:
            request["request_id"] = given if given is not None else request_id
        if tenant_id is not None:
            request["tenant"] = {"tenant_id": tenant_id}
        if extensions:
            request["extensions"] = extensions
        return request

    def _intent(self, tool: str, arguments: Mapping[str, Any]) -> str:
        if self.intent is None:
            return f"call tool {tool}"
        if callable(self.intent):
            return str(self.intent(arguments)) or f"call tool {tool}"
        return render_intent(str(self.intent), arguments)

    def _evidence(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        if callable(self.evidence):
            found = self.evidence(arguments)
            return {k: v for k, v in dict(found or {}).items() if v is not MISSING}
        evidence: dict[str, Any] = {}
        for key, spec in self.evidence.items():
            value = resolve(spec, arguments)
            if value is not MISSING:
                evidence[key] = value
        return evidence

    def _amount(self, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
        """A well-formed amount, else None: a missing or malformed amount is left out, so
        the policy asks for it rather than the request failing validation."""
        if self.amount is None:
            return None
        spec = self.amount(arguments) if callable(self.amount) else self.amount
        if not isinstance(spec, Mapping):
            return None
        value = resolve(spec.get("value"), arguments)
        currency = resolve(spec.get("currency"), arguments)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii()
                and currency.isupper()):
            return None
        return {"value": value, "currency": currency}

    def _target(self, arguments: Mapping[str, Any]) -> dict[str, str]:
        if not self.target:
            return {}
        spec = self.target(arguments) if callable(self.target) else self.target
        found = {key: resolve(value, arguments) for key, value in dict(spec).items()}
        return {k: str(v) for k, v in found.items() if v is not MISSING and v is not None}

    def _request_id(self, arguments: Mapping[str, Any]) -> str | None:
        if self.request_id is None:
            return None
        value = resolve(self.request_id, arguments)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            return None
        return str(value)


def arguments_digest(arguments: Mapping[str, Any]) -> str:
    """The canonical digest of the call's arguments. Values that are not JSON (a Python
    tool's connection object, say) count by their type name, so the digest stays stable."""
    try:
        return plain_digest(dict(arguments))
    except (CanonicalizationError, TypeError, ValueError):
        return plain_digest(_jsonable(arguments))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return value
    return f"<{type(value).__name__}>"

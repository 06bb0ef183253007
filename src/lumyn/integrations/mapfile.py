"""The MCP gateway's map file (tools.yml): which tool calls become which DecisionRequests.

    subject: {type: agent, id: support-bot, tenant_id: acme}
    default: deny                # unmapped tools: deny (the default) or allow
    tools:
      refund_order:
        action_type: support.refund
        intent: "Refund order {order_id}"
        amount: {value: $.amount, currency: $.currency}
        evidence: {order_id: $.order_id, payment_instrument_risk: low}
        request_id: $.idempotency_key
      lookup_order: allow        # never gated (`deny`: never forwarded)

It is read with the policy loader's safe YAML reader and checked whole at start; every problem
is located (file:line, key) like a policy problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumyn.errors import LumynError
from lumyn.integrations.mapping import ToolRule, is_path, path_problem, template_problem
from lumyn.policy.load import LoadedYaml, Problem, YamlRejected, load_yaml

ALLOW, DENY = "allow", "deny"
ACTION_TYPE = re.compile(r"^[a-z0-9]+(\.[a-z0-9_]+)+$")
SUBJECT_TYPES = ("service", "agent", "user", "job")
SUBJECT_KEYS = {"type", "id", "tenant_id", "ip", "user_agent", "roles"}
TOOL_KEYS = {"action_type", "intent", "amount", "evidence", "request_id", "target"}
TARGET_KEYS = {"system", "resource_type", "resource_id"}


__all__ = ["ALLOW", "DENY", "MapError", "ToolMap", "ToolRule", "load_map", "parse_map"]


class MapError(LumynError):
    reason_code = "INVALID_MAP"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


@dataclass(frozen=True)
class ToolMap:
    subject: dict[str, Any]
    default: str = DENY
    tools: dict[str, ToolRule | str] = field(default_factory=dict)

    def rule_for(self, tool: str) -> ToolRule | str:
        """The tool's rule, or ALLOW / DENY."""
        return self.tools.get(tool, self.default)


def load_map(path: str | Path) -> ToolMap:
    """Read and check a map file; MapError names the first problem (and holds them all)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MapError([f"{source}: map file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MapError([f"{source}: cannot read the map file: {exc}"]) from None
    return parse_map(text, source)


def parse_map(text: str, source: str = "tools.yml") -> ToolMap:
    if not text.strip():
        raise MapError([f"{source}: the map file is empty"])
    try:
        loaded = load_yaml(text)
    except YamlRejected as exc:
        raise MapError([exc.problem.format(source)]) from None
    checker = _Checker(loaded, source)
    tool_map = checker.tool_map()
    if checker.problems:
        raise MapError(checker.problems)
    return tool_map


class _Checker:
    def __init__(self, loaded: LoadedYaml, source: str) -> None:
        self.loaded = loaded
        self.source = source
        self.problems: list[str] = []

    def problem(self, path: tuple[str, ...], message: str) -> None:
        key = ".".join(path) or None
        self.problems.append(Problem(message, line=self.loaded.line_of(path), key=key)
                             .format(self.source))

    def mapping(self, value: Any, path: tuple[str, ...],
                allowed: set[str] | None = None) -> dict[str, Any]:
        """`value` as a mapping (else a problem and {}); `allowed` limits its keys."""
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping")
            return {}
        if allowed is not None:
            for key in sorted(set(value) - allowed):
                self.problem((*path, key),
                             f"unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
        return value

    def tool_map(self) -> ToolMap:
        root = self.mapping(self.loaded.data, (), {"subject", "default", "tools"})
        subject = self.subject(root.get("subject"))
        default = root.get("default", DENY)
        if default not in (ALLOW, DENY):
            self.problem(("default",), "must be 'deny' or 'allow'")
            default = DENY
        tools: dict[str, ToolRule | str] = {}
        for name, spec in self.mapping(root.get("tools", {}), ("tools",)).items():
            tool = self.tool(str(name), spec)
            if tool is not None:
                tools[str(name)] = tool
        return ToolMap(subject=subject, default=str(default), tools=tools)

    def subject(self, value: Any) -> dict[str, Any]:
        if value is None:
            self.problem(("subject",), "is required: {type: agent, id: NAME, tenant_id: TENANT}")
            return {}
        subject = self.mapping(value, ("subject",), SUBJECT_KEYS)
        if subject.get("type") not in SUBJECT_TYPES:
            self.problem(("subject", "type"), f"must be one of {', '.join(SUBJECT_TYPES)}")
        for key in ("id", "tenant_id"):
            if (key == "id" or key in subject) and not (isinstance(subject.get(key), str)
                                                        and subject.get(key)):
                self.problem(("subject", key), "must be a non-empty string")
        return dict(subject)

    def tool(self, name: str, spec: Any) -> ToolRule | str | None:
        path = ("tools", name)
        if spec in (ALLOW, DENY):
            return str(spec)
        if not isinstance(spec, dict):
            self.problem(path, "must be 'allow', 'deny' or a mapping with action_type")
            return None
        self.mapping(spec, path, TOOL_KEYS)
        action_type = spec.get("action_type")
        if not isinstance(action_type, str) or not ACTION_TYPE.match(action_type):
            self.problem((*path, "action_type"),
                         "is required: a dotted lower-case type like support.refund")
        intent = spec.get("intent")
        if intent is not None:
            why = template_problem(intent) if isinstance(intent, str) else "must be a string"
            if why:
                self.problem((*path, "intent"), why)
        evidence = self.mapping(spec.get("evidence") or {}, (*path, "evidence"))
        for key, value in evidence.items():
            self.spec((*path, "evidence", str(key)), value)
        request_id = spec.get("request_id")
        if request_id is not None and (not is_path(request_id) or path_problem(request_id)):
            self.problem((*path, "request_id"), "must be a $.path into the arguments")
        self.amount((*path, "amount"), spec.get("amount"))
        target = spec.get("target")
        if target is not None:
            for key, value in self.mapping(target, (*path, "target"), TARGET_KEYS).items():
                self.spec((*path, "target", key), value)
        if not isinstance(action_type, str):
            return None
        return ToolRule(action_type=action_type, intent=intent, amount=spec.get("amount"),
                        evidence=dict(evidence),
                        request_id=request_id, target=target)

    def spec(self, path: tuple[str, ...], value: Any) -> None:
        if is_path(value):
            why = path_problem(value)
            if why:
                self.problem(path, why)

    def amount(self, path: tuple[str, ...], value: Any) -> None:
        if value is None:
            return
        amount = self.mapping(value, path, {"value", "currency"})
        if not amount:
            return
        number = amount.get("value")
        if is_path(number):
            self.spec((*path, "value"), number)
        elif isinstance(number, bool) or not isinstance(number, int | float):
            self.problem((*path, "value"), "must be a $.path or a number")
        currency = amount.get("currency")
        if is_path(currency):
            self.spec((*path, "currency"), currency)
        elif not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
            self.problem((*path, "currency"), "must be a $.path or a currency code like USD")

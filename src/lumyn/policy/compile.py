"""Validate a policy (every problem, located) and compile it: predicates per rule (the
reference reading) and generated matchers per action type (what evaluation runs)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from lumyn.contracts.canonical import digest
from lumyn.contracts.schemas import POLICY_SCHEMA, load_schema
from lumyn.errors import LumynError
from lumyn.policy.codegen import build_matcher
from lumyn.policy.conditions import (
    NUMERIC_OPERATORS,
    Facts,
    Predicate,
    compile_condition,
    is_number,
    make_getter,
    path_known,
    split_key,
)
from lumyn.policy.lint import action_scope, policy_warnings
from lumyn.policy.load import MAX_POLICY_BYTES, LoadedYaml, Problem, YamlRejected, load_yaml
from lumyn.policy.model import (
    RESERVED_REASON_CODES,
    STAGES,
    CompiledPolicy,
    CompiledRule,
    Query,
    RuleGroup,
)
from lumyn.policy.types import PathTypes

ACTION_TYPE_RE = re.compile(r"^[a-z0-9]+(\.[a-z0-9_]+)+$")
BLOCK_KEYS = ("if", "if_all", "if_any")


class PolicyInvalid(LumynError):
    """The policy failed validation. `problems` lists every problem found, located."""

    reason_code = "INVALID_POLICY"

    def __init__(self, problems: list[Problem], source: str = "policy.yml") -> None:
        self.problems = problems
        self.source = source
        lines = [p.format(source) for p in problems]
        super().__init__(f"{len(problems)} problem(s) in {source}: " + "; ".join(lines))

    def lines(self) -> list[str]:
        return [f"{p.format(self.source)} [{self.reason_code}]" for p in self.problems]


@cache
def _structure_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(POLICY_SCHEMA))


def load_policy(path: str | Path) -> CompiledPolicy:
    """Read, validate and compile a policy file."""
    return compile_policy(read_policy_text(path), source=str(path))


def check_policy(path: str | Path) -> tuple[CompiledPolicy, list[Problem]]:
    """Load a policy file and list its warnings (policy/lint.py). Raises PolicyInvalid."""
    text = read_policy_text(path)
    loaded = _validated(text, str(path))
    return _compile(loaded.data, text), policy_warnings(loaded)


def read_policy_text(path: str | Path) -> str:
    """A policy file's text; a missing, oversized or unreadable file is PolicyInvalid."""
    path = Path(path)
    source = str(path)
    try:
        if path.stat().st_size > MAX_POLICY_BYTES:
            raise PolicyInvalid([Problem(f"file is larger than {MAX_POLICY_BYTES} bytes")], source)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyInvalid([Problem("file not found")], source) from None
    except IsADirectoryError:
        raise PolicyInvalid([Problem("is a directory, not a policy file")], source) from None
    except UnicodeDecodeError:
        raise PolicyInvalid([Problem("file is not UTF-8 text")], source) from None
    except OSError as exc:
        raise PolicyInvalid([Problem(f"cannot read: {exc.strerror}")], source) from None
    return text


def compile_policy(text: str, source: str = "policy.yml") -> CompiledPolicy:
    """Validate policy YAML text and compile it. Raises PolicyInvalid listing every problem."""
    return _compile(_validated(text, source).data, text)


def _validated(text: str, source: str) -> LoadedYaml:
    try:
        loaded = load_yaml(text)
    except YamlRejected as exc:
        raise PolicyInvalid([exc.problem], source) from None
    problems = validate_policy_data(loaded)
    if problems:
        raise PolicyInvalid(problems, source)
    return loaded


def validate_policy_data(loaded: LoadedYaml) -> list[Problem]:
    data = loaded.data
    problems: list[Problem] = []
    for error in _structure_validator().iter_errors(data):
        path = tuple(error.absolute_path)
        problems.append(
            Problem(
                error.message,
                line=loaded.line_of(path),
                rule_id=_rule_id_at(data, path),
                key=_key_name(path),
            )
        )
    if isinstance(data, dict):
        problems.extend(_semantic_problems(data, loaded))
    # One problem per (line, message): schema and semantic checks can overlap.
    unique: dict[tuple[int | None, str], Problem] = {}
    for problem in problems:
        unique.setdefault((problem.line, problem.format()), problem)
    return sorted(unique.values(), key=lambda p: (p.line or 0, p.message))


def _key_name(path: tuple[Any, ...]) -> str | None:
    rest = path[2:] if len(path) >= 2 and path[0] == "rules" else path
    return ".".join(str(p) for p in rest) or None


def _rule_id_at(data: Any, path: tuple[Any, ...]) -> str | None:
    if len(path) >= 2 and path[0] == "rules" and isinstance(data, dict):
        rules = data.get("rules")
        if isinstance(rules, list) and isinstance(path[1], int) and path[1] < len(rules):
            rule = rules[path[1]]
            if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                return str(rule["id"])
            return f"#{path[1] + 1}"
    return None


def _semantic_problems(data: dict[str, Any], loaded: LoadedYaml) -> list[Problem]:
    problems: list[Problem] = []
    thresholds = data.get("thresholds") if isinstance(data.get("thresholds"), dict) else {}
    assert isinstance(thresholds, dict)

    defaults = data.get("defaults")
    if isinstance(defaults, dict):
        code = defaults.get("default_reason_code")
        if isinstance(code, str) and code in RESERVED_REASON_CODES - {"NO_MATCH_DEFAULT_ESCALATE"}:
            problems.append(
                Problem(
                    f"reason code {code} is reserved for the engine",
                    line=loaded.line_of(("defaults", "default_reason_code")),
                    key="defaults.default_reason_code",
                )
            )

    required = data.get("required_evidence")
    if isinstance(required, dict):
        for action_type in required:
            if not ACTION_TYPE_RE.match(str(action_type)):
                problems.append(
                    Problem(
                        f"'{action_type}' is not a namespaced action type (e.g. support.refund)",
                        line=loaded.line_of(("required_evidence", action_type)),
                        key=f"required_evidence.{action_type}",
                    )
                )
            keys = required[action_type]
            for i, key in enumerate(keys if isinstance(keys, list) else []):
                if isinstance(key, str) and key and not path_known(f"evidence.{key}"):
                    problems.append(
                        Problem(
                            f"'{key}' is not an evidence key (dotted keys need a name between dots)",
                            line=loaded.line_of(("required_evidence", action_type, i)),
                            key=f"required_evidence.{action_type}",
                        )
                    )

    rules = data.get("rules")
    if not isinstance(rules, list):
        return problems
    seen_ids: dict[str, int] = {}
    types = PathTypes()  # learns evidence key types in file order
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        rule_id = str(rule["id"]) if isinstance(rule.get("id"), str) else f"#{index + 1}"
        base: tuple[str | int, ...] = ("rules", index)

        def add(message: str, sub: tuple[str | int, ...], key: str) -> None:
            problems.append(
                Problem(message, line=loaded.line_of(base + sub), rule_id=rule_id, key=key)  # noqa: B023
            )

        if isinstance(rule.get("id"), str):
            if rule_id in seen_ids:
                add(f"duplicate rule id (first defined on line {seen_ids[rule_id]})", ("id",), "id")
            else:
                seen_ids[rule_id] = loaded.line_of((*base, "id")) or 0

        then = rule.get("then")
        if isinstance(then, dict):
            codes = then.get("reason_codes")
            if isinstance(codes, list):
                for i, code in enumerate(codes):
                    if isinstance(code, str) and code in RESERVED_REASON_CODES:
                        add(
                            f"reason code {code} is reserved for the engine",
                            ("then", "reason_codes", i),
                            "then.reason_codes",
                        )
            if then.get("verdict") == "QUERY" and not then.get("queries"):
                add("a QUERY rule must list queries", ("then",), "then.queries")

        when = rule.get("when")
        if isinstance(when, dict):
            for key in ("action_type", "action_type_in"):
                values = when.get(key)
                for value in values if isinstance(values, list) else [values]:
                    if isinstance(value, str) and not ACTION_TYPE_RE.match(value):
                        add(
                            f"'{value}' is not a namespaced action type (e.g. support.refund)",
                            ("when", key),
                            f"when.{key}",
                        )

        for block_key in BLOCK_KEYS:
            block = rule.get(block_key)
            maps: list[tuple[tuple[str | int, ...], Any]]
            if block_key == "if":
                maps = [((block_key,), block)]
            elif isinstance(block, list):
                maps = [((block_key, i), m) for i, m in enumerate(block)]
            else:
                continue
            for sub, cond in maps:
                if not isinstance(cond, dict):
                    continue
                for key, operand in cond.items():
                    message = _condition_problem(str(key), operand, thresholds) or _type_problem(
                        types, str(key), operand, loaded.line_of((*base, *sub, key)))
                    if message:
                        add(message, (*sub, key), f"{'.'.join(map(str, sub))}.{key}")
    return problems


def _condition_problem(key: str, operand: Any, thresholds: dict[str, Any]) -> str | None:
    parts = split_key(key)
    if parts is None:
        return f"unknown operator in '{key}' (use _is _ne _in _not_in _gt _gte _lt _lte _present _contains)"
    path, op = parts
    if not path_known(path):
        return f"unknown path '{path}'"
    if isinstance(operand, dict):
        if set(operand) != {"threshold"} or not isinstance(operand["threshold"], str):
            return "an object operand must be {threshold: NAME}"
        name = operand["threshold"]
        if name not in thresholds:
            return f"threshold '{name}' is not defined in thresholds"
        if op not in NUMERIC_OPERATORS | {"_is", "_ne"}:
            return f"{op} cannot take a threshold"
        return None
    if op in NUMERIC_OPERATORS and not is_number(operand):
        return f"{op} needs a number or {{threshold: NAME}}"
    if op in ("_in", "_not_in") and not isinstance(operand, list):
        return f"{op} needs a list"
    if op == "_present" and not isinstance(operand, bool):
        return "_present needs true or false"
    if op in ("_is", "_ne", "_contains") and isinstance(operand, list | dict):
        return f"{op} needs a single value"
    return None


def _type_problem(types: PathTypes, key: str, operand: Any, line: int | None) -> str | None:
    """A well-formed condition that can never hold for its path's type (types.py)."""
    path, op = split_key(key) or ("", "")
    from_threshold = isinstance(operand, dict)
    return types.check(path, op, operand, line, from_threshold=from_threshold)


def _compile(data: dict[str, Any], text: str) -> CompiledPolicy:
    thresholds = {str(k): float(v) for k, v in (data.get("thresholds") or {}).items()}
    required = {str(k): tuple(v) for k, v in (data.get("required_evidence") or {}).items()}
    ordered = [r for stage in STAGES for r in data.get("rules") or [] if r["stage"] == stage]
    compiled = [_compile_rule(rule, thresholds) for rule in ordered]
    # The action types a rule is limited to, if any: rules are grouped by action type.
    scopes = [action_scope(rule.get("when") or {}) for rule in ordered]

    def group(action: str | None) -> RuleGroup:
        picked = [i for i, scope in enumerate(scopes)
                  if scope is None or (action is not None and action in scope)]
        return RuleGroup(tuple(compiled[i] for i in picked),
                         build_matcher([ordered[i] for i in picked], thresholds))

    named = sorted({a for scope in scopes if scope for a in scope})
    defaults = data["defaults"]
    return CompiledPolicy(
        policy_id=data["policy_id"],
        policy_version=data["policy_version"],
        policy_hash=digest(data),
        default_mode=defaults.get("mode", "enforce"),
        default_verdict=defaults["default_verdict"],
        default_reason_code=defaults["default_reason_code"],
        thresholds=thresholds,
        required_evidence=required,
        rules=tuple(compiled),
        text=text,
        data=data,
        groups={action: group(action) for action in named},
        other_group=group(None),
    )


def _compile_rule(rule: dict[str, Any], thresholds: dict[str, float]) -> CompiledRule:
    blocks: list[Predicate] = []
    if "if" in rule:
        blocks.append(_all_of(_compile_map(rule["if"], thresholds)))
    for cond in rule.get("if_all") or []:
        blocks.append(_all_of(_compile_map(cond, thresholds)))
    if rule.get("if_any"):
        options = tuple(_all_of(_compile_map(c, thresholds)) for c in rule["if_any"])
        blocks.append(lambda f: any(p(f) for p in options))
    when = rule.get("when") or {}
    then = rule["then"]
    return CompiledRule(
        rule_id=rule["id"],
        stage=rule["stage"],
        selector=_compile_selector(when),
        blocks=tuple(blocks),
        requirements_only=rule["stage"] == "REQUIREMENTS"
        and not any(k in rule for k in BLOCK_KEYS),
        verdict=then["verdict"],
        reason_codes=tuple(then["reason_codes"]),
        queries=tuple(Query(q["field"], q["question"]) for q in then.get("queries") or []),
        obligations=tuple(then.get("obligations") or []),
    )


def _compile_map(cond: dict[str, Any], thresholds: dict[str, float]) -> list[Predicate]:
    predicates = []
    for key, operand in cond.items():
        parts = split_key(key)
        assert parts is not None  # validated
        path, op = parts
        if isinstance(operand, dict):
            operand = thresholds[operand["threshold"]]
        predicates.append(compile_condition(op, make_getter(path), operand))
    return predicates


def _all_of(predicates: list[Predicate]) -> Predicate:
    items = tuple(predicates)
    if len(items) == 1:
        return items[0]
    return lambda f: all(p(f) for p in items)


def _compile_selector(when: dict[str, Any]) -> Predicate:
    checks: list[Predicate] = []
    selectors = [("action_type", "action.type"), ("subject_type", "subject.type"),
                 ("tenant_id", "tenant_id")]
    for key, fact in selectors:
        if key in when:
            checks.append(_equals(fact, when[key]))
        if f"{key}_in" in when:
            checks.append(_member(fact, frozenset(when[f"{key}_in"])))
    if "tag" in when:
        tag = when["tag"]
        checks.append(lambda f: tag in (f.get("action.tags") or ()))
    return _all_of(checks) if checks else _always


def _equals(fact: str, wanted: Any) -> Predicate:
    return lambda f: bool(f.get(fact) == wanted)


def _member(fact: str, allowed: frozenset[Any]) -> Predicate:
    return lambda f: f.get(fact) in allowed


def _always(_: Facts) -> bool:
    return True

"""Warnings about a valid policy: things that evaluate, but are probably not what was meant.

- a rule shadowed by an earlier rule of the same stage and selector (the earlier one matches
  whenever it does, with a verdict at least as strong, so it never changes a verdict);
- a threshold defined but never used;
- a rule whose action selector names no action type the policy mentions elsewhere (a typo
  such as `support.refnud`), or can match no action type at all;
- a QUERY rule whose queries name fields its conditions never test.

Pure: reads the validated policy data and where each value sits in the YAML.
"""

from __future__ import annotations

from typing import Any

from lumyn.contracts.canonical import canonical_bytes
from lumyn.policy.conditions import split_key
from lumyn.policy.load import LoadedYaml, Problem
from lumyn.policy.model import PRECEDENCE

BLOCK_KEYS = ("if", "if_all", "if_any")
# The request fields a fact path reads, for matching query fields against what a rule tests.
_PATH_FIELDS: dict[str, tuple[str, ...]] = {
    "amount_usd": ("action.amount", "evidence.fx_rate_to_usd"),
    "amount_value": ("action.amount.value",),
    "amount_currency": ("action.amount.currency",),
}

Term = tuple[str, bytes]  # (condition key, canonical operand)


def policy_warnings(loaded: LoadedYaml) -> list[Problem]:
    """Every warning for a policy that passed validation (compile.validate_policy_data)."""
    data: dict[str, Any] = loaded.data
    rules: list[dict[str, Any]] = data.get("rules") or []
    warnings: list[Problem] = []

    def warn(index: int | None, message: str, sub: tuple[str | int, ...], key: str | None) -> None:
        base: tuple[str | int, ...] = ("rules", index) if index is not None else ()
        rule_id = str(rules[index]["id"]) if index is not None else None
        warnings.append(Problem(message, line=loaded.line_of(base + sub), rule_id=rule_id,
                                key=key, severity="warning"))

    for name in _unused_thresholds(data):
        warnings.append(Problem(f"threshold '{name}' is defined but no rule uses it",
                                line=loaded.line_of(("thresholds", name)),
                                key=f"thresholds.{name}", severity="warning"))
    for index, rule in enumerate(rules):
        for message in _selector_problems(data, index):
            warn(index, message, ("when",), "when")
        for field in _untested_query_fields(data, rule):
            warn(index, f"queries ask for {field}, which this rule never tests",
                 ("then", "queries"), "then.queries")
        earlier = _shadowed_by(rules, index)
        if earlier is not None:
            first = loaded.line_of(("rules", earlier, "id"))
            warn(index, f"shadowed by rule {rules[earlier]['id']} (line {first}): same stage and "
                 "selector, it matches whenever this rule does with a verdict at least as "
                 "strong, so this rule never changes a verdict", ("id",), "id")
    return sorted(warnings, key=lambda p: (p.line or 0, p.message))


# -- thresholds --------------------------------------------------------------------------------


def _unused_thresholds(data: dict[str, Any]) -> list[str]:
    used = {operand["threshold"] for rule in data.get("rules") or []
            for cond in _condition_maps(rule) for operand in cond.values()
            if isinstance(operand, dict)}
    return [name for name in data.get("thresholds") or {} if name not in used]


def _condition_maps(rule: dict[str, Any]) -> list[dict[str, Any]]:
    maps = [rule["if"]] if "if" in rule else []
    return maps + list(rule.get("if_all") or []) + list(rule.get("if_any") or [])


# -- selectors ---------------------------------------------------------------------------------


def action_scope(when: dict[str, Any]) -> frozenset[str] | None:
    """The action types a selector is limited to; None when it names none (matches all)."""
    scope: frozenset[str] | None = None
    if "action_type" in when:
        scope = frozenset([when["action_type"]])
    if "action_type_in" in when:
        listed = frozenset(when["action_type_in"])
        scope = listed if scope is None else scope & listed
    return scope


def _selector_problems(data: dict[str, Any], index: int) -> list[str]:
    rules = data.get("rules") or []
    scope = action_scope(rules[index].get("when") or {})
    if scope is None:
        return []
    if not scope:
        return ["action_type and action_type_in share no action type: this rule never matches"]
    elsewhere = set(data.get("required_evidence") or {})
    for other, rule in enumerate(rules):
        other_scope = action_scope(rule.get("when") or {})
        if other != index and other_scope:
            elsewhere |= other_scope
    if elsewhere and not scope & elsewhere:
        names = ", ".join(sorted(scope))
        return [f"selects {names}, which no other rule or required_evidence mentions: "
                "a typo would make this rule never match"]
    return []


def _selector_key(rule: dict[str, Any]) -> tuple[Any, ...]:
    when = rule.get("when") or {}
    rest = sorted((k, canonical_bytes(v)) for k, v in when.items()
                  if k not in ("action_type", "action_type_in"))
    return (action_scope(when), tuple(rest))


# -- queries -----------------------------------------------------------------------------------


def _tested_fields(data: dict[str, Any], rule: dict[str, Any]) -> set[str]:
    fields: set[str] = set()
    for cond in _condition_maps(rule):
        for key in cond:
            path = (split_key(key) or (key, ""))[0]
            fields.update(_PATH_FIELDS.get(path, (path,)))
    if rule["stage"] == "REQUIREMENTS" and not any(k in rule for k in BLOCK_KEYS):
        # Without conditions it tests the required evidence of the action types it selects.
        required: dict[str, list[str]] = data.get("required_evidence") or {}
        scope = action_scope(rule.get("when") or {})
        for action, keys in required.items():
            if scope is None or action in scope:
                fields.update(f"evidence.{key}" for key in keys)
    return fields


def _untested_query_fields(data: dict[str, Any], rule: dict[str, Any]) -> list[str]:
    then = rule["then"]
    if then["verdict"] != "QUERY":
        return []
    tested = _tested_fields(data, rule)

    def covered(field: str) -> bool:
        return any(field == t or field.startswith(t + ".") or t.startswith(field + ".")
                   for t in tested)

    return [q["field"] for q in then.get("queries") or [] if not covered(q["field"])]


# -- shadowing ---------------------------------------------------------------------------------


def _terms(cond: dict[str, Any]) -> frozenset[Term]:
    return frozenset((key, canonical_bytes(operand)) for key, operand in cond.items())


def _conditions(rule: dict[str, Any]) -> tuple[frozenset[Term], list[frozenset[Term]]]:
    """(terms that must all hold, the if_any options: one must hold)."""
    required: frozenset[Term] = frozenset()
    for cond in ([rule["if"]] if "if" in rule else []) + list(rule.get("if_all") or []):
        required |= _terms(cond)
    return required, [_terms(c) for c in rule.get("if_any") or []]


def _implies(later: dict[str, Any], earlier: dict[str, Any]) -> bool:
    """Whenever `later`'s conditions hold, `earlier`'s hold too (judged on the terms as
    written: sound, not complete)."""
    later_all, later_any = _conditions(later)
    earlier_all, earlier_any = _conditions(earlier)
    if not earlier_all <= later_all:
        return False
    if not earlier_any:
        return True
    # Each way the later rule can hold must include one of the earlier rule's options.
    return all(any(option <= later_all | way for option in earlier_any)
               for way in (later_any or [frozenset()]))


def _requirements_only(rule: dict[str, Any]) -> bool:
    return rule["stage"] == "REQUIREMENTS" and not any(k in rule for k in BLOCK_KEYS)


def _shadowed_by(rules: list[dict[str, Any]], index: int) -> int | None:
    rule = rules[index]
    if _requirements_only(rule):
        return None
    for earlier in range(index):
        other = rules[earlier]
        if (other["stage"] == rule["stage"] and not _requirements_only(other)
                and _selector_key(other) == _selector_key(rule)
                and PRECEDENCE[other["then"]["verdict"]] >= PRECEDENCE[rule["then"]["verdict"]]
                and _implies(rule, other)):
            return earlier
    return None


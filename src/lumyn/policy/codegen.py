"""Compile rules to Python source: one function per group of rules, one expression per rule.

conditions.py gives the reference reading of each condition as a closure; evaluating a
policy through closures costs a few Python calls per condition. Here the same conditions
are written out as expressions inside one generated function, so a decision evaluates all
its candidate rules in a single frame. tests/test_core_evaluate_properties.py holds both
readings equal over generated policies and facts.

Only values this module builds reach the source text: fact paths and operands are passed
as named constants, never spliced in as text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lumyn.policy.conditions import MISSING, Facts, evidence_at, is_number, same, split_key

Matcher = Callable[[Facts], tuple[Any, ...]]  # one truthy or falsy value per rule

_NUMERIC = {"_gt": ">", "_gte": ">=", "_lt": "<", "_lte": "<="}


def _same_any(value: Any, options: tuple[Any, ...]) -> bool:
    return value is not MISSING and any(same(value, o) for o in options)


def _contains(value: Any, operand: Any) -> bool:
    return isinstance(value, list) and any(same(x, operand) for x in value)


class _Source:
    """Collects the constants one generated function refers to."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        name = f"k{len(self.constants)}"
        self.constants[name] = value
        return name

    def getter(self, path: str) -> str:
        if path.startswith("evidence."):
            keys = tuple(path[len("evidence.") :].split("."))
            if len(keys) == 1:
                return f"ev.get({self.const(keys[0])}, M)"
            return f"_nested(ev, {self.const(keys)})"
        return f"f.get({self.const(path)}, M)"

    def condition(self, key: str, operand: Any) -> str:
        """The expression of one `<path>_<op>: operand` (thresholds already resolved)."""
        parts = split_key(key)
        assert parts is not None  # validated before compiling
        path, op = parts
        get = self.getter(path)
        if op in ("_is", "_ne"):
            test = self._same(get, operand)
            return test if op == "_is" else f"not ({test})"
        if op in ("_in", "_not_in"):
            options = tuple(operand)
            if all(type(o) is str for o in options):
                test = f"(type(v := {get}) is str and v in {self.const(frozenset(options))})"
            else:
                test = f"_same_any({get}, {self.const(options)})"
            return test if op == "_in" else f"not {test}"
        if op == "_present":
            test = f"((v := {get}) is not M and v is not None and v != '')"
            return test if operand else f"not {test}"
        if op == "_contains":
            return f"_contains({get}, {self.const(operand)})"
        limit = self.const(float(operand))
        return f"({self._number(get)} and v {_NUMERIC[op]} {limit})"

    @staticmethod
    def _number(get: str) -> str:
        """is_number(v) with v bound to the value; exact types first, without a call."""
        return f"((t := type(v := {get})) is float or t is int or is_number(v))"

    def _same(self, get: str, operand: Any) -> str:
        """same(value, operand) with the value present, specialised on the operand's type."""
        if operand is True or operand is False or operand is None:
            return f"({get} is {operand!r})"
        if type(operand) is str:
            return f"(type(v := {get}) is str and v == {self.const(operand)})"
        if is_number(operand):
            return f"({self._number(get)} and v == {self.const(operand)})"
        return f"((v := {get}) is not M and same(v, {self.const(operand)}))"

    def selector(self, when: dict[str, Any]) -> list[str]:
        """The selector checks other than the action type (rules are grouped by it)."""
        checks = []
        for key, fact in (("subject_type", "subject.type"), ("tenant_id", "tenant_id")):
            if key in when:
                checks.append(f"(f.get({self.const(fact)}) == {self.const(when[key])})")
            if f"{key}_in" in when:
                allowed = self.const(frozenset(when[f"{key}_in"]))
                checks.append(f"(f.get({self.const(fact)}) in {allowed})")
        if "tag" in when:
            tags = self.const("action.tags")
            checks.append(f"({self.const(when['tag'])} in (f.get({tags}) or ()))")
        return checks

    def rule(self, rule: dict[str, Any], thresholds: dict[str, float]) -> str:
        def all_of(cond: dict[str, Any]) -> list[str]:
            return [self.condition(key, resolve(operand)) for key, operand in cond.items()]

        def resolve(operand: Any) -> Any:
            return thresholds[operand["threshold"]] if isinstance(operand, dict) else operand

        terms = self.selector(rule.get("when") or {})
        if "if" in rule:
            terms.extend(all_of(rule["if"]))
        for cond in rule.get("if_all") or []:
            terms.extend(all_of(cond))
        if rule.get("if_any"):
            options = [" and ".join(all_of(c)) or "True" for c in rule["if_any"]]
            terms.append("(" + " or ".join(f"({o})" for o in options) + ")")
        return " and ".join(terms) or "True"


def build_matcher(rules: list[dict[str, Any]], thresholds: dict[str, float]) -> Matcher:
    """A function of the facts returning, per rule in order, whether its conditions and
    non-action selectors hold."""
    source = _Source()
    lines = ["def match(f):", "    ev = f['evidence']", "    return ("]
    lines.extend(f"        {source.rule(rule, thresholds)}," for rule in rules)
    lines.append("    )")
    namespace: dict[str, Any] = {
        "M": MISSING, "same": same, "is_number": is_number, "_nested": evidence_at,
        "_same_any": _same_any, "_contains": _contains, **source.constants,
    }
    exec(compile("\n".join(lines), "<lumyn policy>", "exec"), namespace)
    matcher: Matcher = namespace["match"]
    return matcher

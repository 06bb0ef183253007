"""Path types, and the conditions that cannot hold for their path's type.

Every fact path has a type (number, string, list, object, boolean). `evidence.*` is open: an
evidence key takes the type its first typed use gives it (`_gte` → number, `_contains` → list,
`_is: true` → boolean, a dotted key → object for each prefix), and a later use that disagrees
is an error. A condition that can never hold for its path's type (`amount_currency_gt: 100`,
`action.tags_gt: 3`, `amount_usd_contains: 3`) is an error too: in a HARD_BLOCKS rule it would
silently never block. Validation fails closed.
"""

from __future__ import annotations

from typing import Any

from lumyn.policy.conditions import NUMERIC_OPERATORS, is_number

NUMBER, STRING, LIST, OBJECT, BOOLEAN = "number", "string", "list", "object", "boolean"

# The type of each named fact path (conditions.FACT_PATHS), and of a list's elements.
PATH_TYPES: dict[str, str] = {
    "amount_usd": NUMBER,
    "amount_value": NUMBER,
    "amount_currency": STRING,
    "action.type": STRING,
    "action.tags": LIST,
    "action.target.system": STRING,
    "subject.type": STRING,
    "subject.id": STRING,
    "subject.roles": LIST,
    "tenant.environment": STRING,
    "failure_similarity_score": NUMBER,
    "success_similarity_score": NUMBER,
    # The engine places the memory scores into evidence as well (SPEC §4).
    "evidence.failure_similarity_score": NUMBER,
    "evidence.success_similarity_score": NUMBER,
}
ELEMENT_TYPES: dict[str, str] = {"action.tags": STRING, "subject.roles": STRING}


def value_type(value: Any) -> str | None:
    """The JSON type of an operand; None for null (equal only to null, of any path)."""
    if isinstance(value, bool):
        return BOOLEAN
    if is_number(value):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return LIST
    if isinstance(value, dict):
        return OBJECT
    return None


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


class PathTypes:
    """The types known so far while a policy is read in file order: the fixed table plus
    what evidence keys have been used as. `check` returns the problem of one condition
    (None when it can hold) and learns from it."""

    def __init__(self) -> None:
        self.learned: dict[str, tuple[str, int | None]] = {}  # evidence path -> (type, line)

    def type_of(self, path: str) -> tuple[str | None, str]:
        """(type or None when unknown, where it comes from)."""
        if path in PATH_TYPES:
            return PATH_TYPES[path], ""
        if path in self.learned:
            kind, line = self.learned[path]
            return kind, f" (as used on line {line})" if line else " (as used earlier)"
        return None, ""

    def check(self, path: str, op: str, operand: Any, line: int | None,
              from_threshold: bool = False) -> str | None:
        problem = self._check(path, op, operand, from_threshold)
        if path.startswith("evidence."):
            self._learn(path, self._wanted(op, operand, from_threshold), line)
        return problem

    def _check(self, path: str, op: str, operand: Any, from_threshold: bool) -> str | None:
        prefix_problem = self._check_prefixes(path)
        if prefix_problem:
            return prefix_problem
        kind, origin = self.type_of(path)
        name = f"{path} is {_article(kind)} {kind}{origin}" if kind else ""
        if op in NUMERIC_OPERATORS and kind not in (None, NUMBER):
            return f"{op} compares numbers but {name}: it can never hold"
        if op == "_contains":
            if kind not in (None, LIST):
                return f"_contains tests a list but {name}: it can never hold"
            element = ELEMENT_TYPES.get(path)
            operand_type = value_type(operand)
            if element and operand_type not in (None, element):
                return (f"{path} holds {element}s; {op} {operand!r} ({_article(operand_type or '')} "
                        f"{operand_type}) can never hold")
        if op in ("_is", "_ne", "_in", "_not_in") and kind is not None:
            # _in / _not_in are impossible only when no option has the path's type.
            options = operand if op in ("_in", "_not_in") else [operand]
            kinds = [NUMBER if from_threshold else value_type(o) for o in options]
            first = kinds[0] if kinds else None
            if first is not None and None not in kinds and kind not in kinds:
                outcome = "never holds" if op in ("_is", "_in") else "always holds"
                return (f"{name} but {op} compares it with {options[0]!r} "
                        f"({_article(first)} {first}): it {outcome}")
        return None

    @staticmethod
    def _wanted(op: str, operand: Any, from_threshold: bool) -> str | None:
        """The type this condition says its path has (None: it says nothing)."""
        if op in NUMERIC_OPERATORS:
            return NUMBER
        if op == "_contains":
            return LIST
        if op in ("_is", "_ne"):
            return NUMBER if from_threshold else value_type(operand)
        if op in ("_in", "_not_in"):
            kinds = {value_type(o) for o in operand} - {None}
            return kinds.pop() if len(kinds) == 1 else None
        return None

    def _learn(self, path: str, kind: str | None, line: int | None) -> None:
        parts = path.split(".")
        for end in range(2, len(parts)):  # evidence.a.b: evidence.a is an object
            self.learned.setdefault(".".join(parts[:end]), (OBJECT, line))
        if kind is not None:
            self.learned.setdefault(path, (kind, line))

    def _check_prefixes(self, path: str) -> str | None:
        """A dotted evidence path needs each prefix to be an object."""
        parts = path.split(".")
        for end in range(2, len(parts)):
            prefix = ".".join(parts[:end])
            kind, origin = self.type_of(prefix)
            if kind not in (None, OBJECT):
                return (f"{path} reaches into {prefix}, but {prefix} is {_article(kind)} "
                        f"{kind}{origin}: it can never hold")
        return None

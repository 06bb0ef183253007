"""Compiled policy types. Built once per policy load, immutable afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from lumyn.policy.codegen import Matcher
from lumyn.policy.conditions import Predicate

STAGES = ("REQUIREMENTS", "HARD_BLOCKS", "ESCALATIONS", "TRUST_PATHS")
EVALUATION_ORDER = (*STAGES, "DEFAULT")
VERDICTS = ("TRUST", "ESCALATE", "QUERY", "ABSTAIN")  # ascending precedence
PRECEDENCE = {verdict: rank for rank, verdict in enumerate(VERDICTS)}
RESERVED_REASON_CODES = frozenset(
    {
        "NO_MATCH_DEFAULT_ESCALATE",
        "INVALID_REQUEST_SCHEMA",
        "INVALID_POLICY",
        "STORAGE_UNAVAILABLE",
        "CONTEXT_DIGEST_MISMATCH",
    }
)


@dataclass(frozen=True)
class Query:
    field: str
    question: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "question": self.question}


@dataclass(frozen=True)
class CompiledRule:
    rule_id: str
    stage: str
    # The reference reading of the rule: it applies when the selector and every block hold.
    # Evaluation runs the equivalent generated code of its RuleGroup instead (codegen.py).
    selector: Predicate
    blocks: tuple[Predicate, ...]
    requirements_only: bool  # REQUIREMENTS rule without conditions: fires on missing evidence
    verdict: str
    reason_codes: tuple[str, ...]
    queries: tuple[Query, ...]
    obligations: tuple[dict[str, Any], ...]


class RuleGroup(NamedTuple):
    """The rules that can apply to one action type, in evaluation order, and their matcher:
    a function of the facts giving, per rule, whether its other selectors and its
    conditions hold."""

    rules: tuple[CompiledRule, ...]
    match: Matcher


@dataclass(frozen=True)
class CompiledPolicy:
    policy_id: str
    policy_version: str
    policy_hash: str
    default_mode: str
    default_verdict: str
    default_reason_code: str
    thresholds: dict[str, float]
    required_evidence: dict[str, tuple[str, ...]]
    rules: tuple[CompiledRule, ...]  # already in evaluation order (stage, then file order)
    text: str  # the exact YAML text whose hash is policy_hash
    data: dict[str, Any]
    # Per action type some selector names, the rules that can apply (the selector names it
    # or names no action type); `other_group` serves every other action type.
    groups: dict[str, RuleGroup]
    other_group: RuleGroup

    def group_for(self, action_type: str) -> RuleGroup:
        return self.groups.get(action_type, self.other_group)

    def summary(self) -> dict[str, str]:
        return {
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
        }

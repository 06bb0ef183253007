"""Compiled policy types. Built once per policy load, immutable afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    selector: Predicate
    blocks: tuple[Predicate, ...]
    # What evaluation runs once rules_for() has matched the action type: the other selector
    # checks, then every condition of every block, flattened so one failing check stops it.
    checks: tuple[Predicate, ...]
    requirements_only: bool  # REQUIREMENTS rule without conditions: fires on missing evidence
    verdict: str
    reason_codes: tuple[str, ...]
    queries: tuple[Query, ...]
    obligations: tuple[dict[str, Any], ...]


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
    # Rules that can apply to an action type (selector names it, or names no action type),
    # in evaluation order; `other_rules` serves action types no selector names.
    rules_by_action: dict[str, tuple[CompiledRule, ...]]
    other_rules: tuple[CompiledRule, ...]

    def rules_for(self, action_type: str) -> tuple[CompiledRule, ...]:
        return self.rules_by_action.get(action_type, self.other_rules)

    def summary(self) -> dict[str, str]:
        return {
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
        }

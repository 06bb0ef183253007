"""Backtest a candidate policy over stored decisions, and summarise shadow-mode records.

`backtest` re-evaluates every stored decision in scope under the candidate, each with the
memory it saw when it was decided: the record carries the similarity signals the engine read
(`risk_signals.failure_similarity.score`, `explanation.details.success_similarity_score`),
which are exactly what replay recomputes from the items the decision considered, so no memory
is fetched. `shadow_diff` compares each record's live verdict with its `extensions.shadow`
without evaluating anything.

Both stream the store in keyset pages (lumyn.store.scan) and keep only aggregates, so memory
stays flat however many decisions are scanned; changed decisions go to a callback as they
are found (the CLI streams them into its JSON output).
"""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from lumyn.durations import match_duration
from lumyn.engine.evaluate import evaluate
from lumyn.engine.features import build_facts
from lumyn.engine.normalize import tenant_of
from lumyn.errors import LumynError
from lumyn.policy.model import PRECEDENCE, CompiledPolicy
from lumyn.store.base import Store
from lumyn.store.scan import Scope

EVERYTHING = Scope()
PAGE = 1000  # decisions per query: large enough to amortise a round trip, small in memory
EXAMPLES = 5  # example decision ids kept per transition


class ScopeInvalid(LumynError):
    reason_code = "INVALID_ARGUMENT"


class Outcome(NamedTuple):
    verdict: str
    reason_codes: tuple[str, ...]
    deciding_rules: tuple[str, ...]  # rules whose effect is the verdict (DEFAULT when none)
    matched_rules: frozenset[str]


class Answer(NamedTuple):
    """The other side's verdict on one decision; made into an Outcome only when it differs
    (most decisions do not change, and the scan's speed is the evaluation's)."""

    verdict: str
    reason_codes: tuple[str, ...]
    matched_rules: Sequence[dict[str, Any]]
    policy_hash: str | None = None  # shadow records name the policy that answered


class Change(NamedTuple):
    decision_id: str
    created_at: str
    tenant_id: str
    action_type: str
    old: Outcome
    new: Outcome

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id, "created_at": self.created_at,
            "tenant_id": self.tenant_id, "action_type": self.action_type,
            "old_verdict": self.old.verdict, "new_verdict": self.new.verdict,
            "old_reason_codes": list(self.old.reason_codes),
            "new_reason_codes": list(self.new.reason_codes),
        }


@dataclass
class Transition:
    """Every decision that moved from one verdict to another, summarised."""

    count: int = 0
    rules: Counter[str] = field(default_factory=Counter)  # deciding the new verdict
    rules_no_longer_matching: Counter[str] = field(default_factory=Counter)
    reason_codes_added: Counter[str] = field(default_factory=Counter)
    reason_codes_removed: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, change: Change) -> None:
        old, new = change.old, change.new
        self.count += 1
        self.rules.update(new.deciding_rules)
        if new.deciding_rules:  # known: a shadow record keeps only its verdict and codes
            self.rules_no_longer_matching.update(r for r in old.deciding_rules
                                                 if r not in new.matched_rules and r != "DEFAULT")
        self.reason_codes_added.update(c for c in new.reason_codes if c not in old.reason_codes)
        self.reason_codes_removed.update(c for c in old.reason_codes if c not in new.reason_codes)
        if len(self.examples) < EXAMPLES:
            self.examples.append(change.decision_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "rules": dict(self.rules.most_common()),
            "rules_no_longer_matching": dict(self.rules_no_longer_matching.most_common()),
            "reason_codes_added": dict(self.reason_codes_added.most_common()),
            "reason_codes_removed": dict(self.reason_codes_removed.most_common()),
            "examples": self.examples,
        }


@dataclass
class DiffReport:
    mode: str  # "backtest" or "shadow"
    scope: Scope
    candidate: dict[str, str] | None = None  # a backtest's candidate policy (id, version, hash)
    scanned: int = 0
    compared: int = 0  # shadow: records that carry a shadow verdict
    changed: int = 0
    loosened: int = 0  # towards TRUST
    tightened: int = 0
    reason_codes_only: int = 0  # same verdict, different reason codes
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    transitions: dict[tuple[str, str], Transition] = field(default_factory=dict)
    policies: set[str] = field(default_factory=set)  # policy hashes seen on the other side

    def merge(self, scanned: int, page: PageResult, on_change: Callable[[Change], None] | None,
              on_progress: Callable[[int], None] | None) -> None:
        self.scanned += scanned
        self.compared += page.compared
        self.before.update(page.before)
        self.after.update(page.after)
        self.reason_codes_only += page.reason_codes_only
        self.policies |= page.policies
        for change in page.changes:
            self.add(change)
            if on_change is not None:
                on_change(change)
        if on_progress is not None:
            on_progress(scanned)

    def add(self, change: Change) -> None:
        self.changed += 1
        if PRECEDENCE[change.new.verdict] < PRECEDENCE[change.old.verdict]:
            self.loosened += 1
        else:
            self.tightened += 1
        key = (change.old.verdict, change.new.verdict)
        self.transitions.setdefault(key, Transition()).add(change)

    def as_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {"mode": self.mode, "scope": self.scope._asdict()}
        if self.mode == "backtest":
            head["candidate"] = self.candidate
        else:
            head["shadow_policies"] = sorted(self.policies)
        return {
            **head,
            "scanned": self.scanned,
            "compared": self.compared,
            "changed": self.changed,
            "loosened": self.loosened,
            "tightened": self.tightened,
            "reason_codes_only": self.reason_codes_only,
            "verdicts_before": dict(sorted(self.before.items())),
            "verdicts_after": dict(sorted(self.after.items())),
            "transitions": [{"from": a, "to": b, **t.as_dict()}
                            for (a, b), t in sorted(self.transitions.items(),
                                                    key=lambda kv: -kv[1].count)],
        }


# -- scope -------------------------------------------------------------------------------------

def since_bound(since: str | None, now: datetime | None = None) -> str | None:
    """`7d`, `12h`, `30m`, `2w` (before now) or an RFC 3339 date/time, as a created_at bound."""
    if since is None:
        return None
    now = now or datetime.now(UTC)
    span = match_duration(since)
    if span is not None:
        moment = now - span
    else:
        try:
            moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ScopeInvalid(f"--since '{since}' is neither a duration (7d, 12h, 30m, 2w) nor "
                               "an RFC 3339 date or time", field="--since") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    stamp = moment.astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def scan(store: Store, scope: Scope, page: int = PAGE) -> Iterator[list[tuple[str, bytes]]]:
    """The decisions in scope, a page at a time, oldest first."""
    after: str | None = None
    while True:
        rows = store.decisions_page(scope, after, page)
        if not rows:
            return
        yield rows
        after = rows[-1][0]


# -- outcomes ----------------------------------------------------------------------------------


def outcome(verdict: str, reason_codes: tuple[str, ...],
            matched_rules: Sequence[dict[str, Any]]) -> Outcome:
    return Outcome(verdict, reason_codes,
                   tuple(m["rule_id"] for m in matched_rules if m.get("effect") == verdict),
                   frozenset(m["rule_id"] for m in matched_rules))


def recorded_outcome(record: dict[str, Any]) -> Outcome:
    return outcome(record["verdict"], tuple(record["reason_codes"]),
                   record.get("matched_rules") or [])


def candidate_answer(policy: CompiledPolicy, record: dict[str, Any]) -> Answer:
    """The candidate's verdict on the recorded request, with the memory signals it saw."""
    request = record["request"]
    risk = record.get("risk_signals") or {}
    failure = (risk.get("failure_similarity") or {}).get("score") or 0.0
    success = ((record.get("explanation") or {}).get("details") or {}).get(
        "success_similarity_score") or 0.0
    result = evaluate(policy, build_facts(request, tenant_of(request), failure, success))
    return Answer(result.verdict, result.reason_codes, result.matched_rules)


def shadow_answer(record: dict[str, Any]) -> Answer | None:
    shadow = (record.get("extensions") or {}).get("shadow")
    if not isinstance(shadow, dict) or shadow.get("verdict") not in PRECEDENCE:
        return None
    return Answer(shadow["verdict"], tuple(shadow.get("reason_codes") or ()), (),
                  str(shadow.get("policy_hash")))


# -- running -----------------------------------------------------------------------------------


class PageResult(NamedTuple):
    """One page compared: tallies and the changed decisions (at most a page of them)."""

    compared: int
    before: Counter[str]
    after: Counter[str]
    reason_codes_only: int
    changes: list[Change]
    policies: set[str]  # the other side's policy hashes (shadow records name theirs)


def compare_page(rows: list[tuple[str, bytes]],
                 other: Callable[[dict[str, Any]], Answer | None]) -> PageResult:
    loads = orjson.loads
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    changes: list[Change] = []
    policies: set[str] = set()
    compared = reason_codes_only = 0
    for decision_id, raw in rows:
        record = loads(raw)
        answer = other(record)
        if answer is None:
            continue
        compared += 1
        old_verdict = record["verdict"]
        before[old_verdict] += 1
        after[answer.verdict] += 1
        if answer.policy_hash is not None:
            policies.add(answer.policy_hash)
        if answer.verdict == old_verdict:
            if answer.reason_codes != tuple(record["reason_codes"]):
                reason_codes_only += 1
            continue
        request = record["request"]
        changes.append(Change(decision_id, record["created_at"], tenant_of(request),
                              request["action"]["type"], recorded_outcome(record),
                              outcome(answer.verdict, answer.reason_codes, answer.matched_rules)))
    return PageResult(compared, before, after, reason_codes_only, changes, policies)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    # Each record is dropped once compared and nothing here makes reference cycles, so the
    # cyclic collector would only rescan the pages' objects over and over: pause it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _run(store: Store, report: DiffReport,
         other: Callable[[dict[str, Any]], Answer | None],
         on_change: Callable[[Change], None] | None,
         on_progress: Callable[[int], None] | None, page: int) -> DiffReport:
    with _no_cyclic_gc():
        for rows in scan(store, report.scope, page):
            report.merge(len(rows), compare_page(rows, other), on_change, on_progress)
    return report


def backtest(store: Store, candidate: CompiledPolicy, scope: Scope = EVERYTHING, *,
             on_change: Callable[[Change], None] | None = None,
             on_progress: Callable[[int], None] | None = None, page: int = PAGE) -> DiffReport:
    """What the candidate policy would have decided on every stored decision in scope."""
    report = DiffReport("backtest", scope, candidate=candidate.summary())
    return _run(store, report, lambda record: candidate_answer(candidate, record),
                on_change, on_progress, page)


def shadow_diff(store: Store, scope: Scope = EVERYTHING, *,
                on_change: Callable[[Change], None] | None = None,
                on_progress: Callable[[int], None] | None = None,
                page: int = PAGE) -> DiffReport:
    """Live verdicts against the shadow verdicts recorded beside them (no evaluation)."""
    return _run(store, DiffReport("shadow", scope), shadow_answer, on_change, on_progress, page)

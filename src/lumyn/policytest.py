"""`lumyn policy test`: run case files against a policy in memory and measure rule coverage.

A case file (YAML or JSON) holds one case or a list of cases:

    name: small refund is trusted
    request: {subject: ..., action: ..., evidence: ...}   # a DecisionRequest
    memory:                                              # optional: labeled past requests
      - {request: {...}, label: failure, summary: "..."}
    expect:
      verdict: TRUST
      reason_codes: [REFUND_SMALL_LOW_RISK]   # optional; every one must be present
      query_fields: [evidence.order_id]       # optional; exactly these queries

A request may leave out `schema_version` and `context` (a placeholder digest_only context is
filled in): a case is about the policy, not the caller's context. Each case is evaluated by the
same code as a live decision (normalize, memory similarity, engine.assess), with Experience
Memory built from that case's own `memory` list only. Nothing is written anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import yaml

from lumyn.engine.assess import assess, request_features
from lumyn.engine.normalize import normalize_request
from lumyn.errors import LumynError
from lumyn.memory.index import LABELS, MemoryIndex, MemoryItem
from lumyn.policy import CompiledPolicy

CASE_SUFFIXES = (".yml", ".yaml", ".json")
PLACEHOLDER_CONTEXT = {"mode": "digest_only", "digest": "sha256:" + "0" * 64}
TOP_K = 5


class CaseInvalid(ValueError):
    """A case that cannot be run as written (reported as a failure of that case)."""


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # file, and position in it when the file holds a list
    request: dict[str, Any]
    expect: dict[str, Any]
    memory: tuple[dict[str, Any], ...] = ()


@dataclass
class CaseResult:
    name: str
    source: str
    problems: list[str] = field(default_factory=list)
    verdict: str | None = None
    reason_codes: list[str] = field(default_factory=list)
    matched_rules: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "problems": self.problems,
                "verdict": self.verdict, "reason_codes": self.reason_codes,
                "matched_rules": self.matched_rules}


@dataclass
class CaseReport:
    policy: dict[str, str]
    results: list[CaseResult]
    rule_ids: list[str]  # every rule of the policy, in file order

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def uncovered_rules(self) -> list[str]:
        covered = {rule for r in self.results for rule in r.matched_rules}
        return [rule for rule in self.rule_ids if rule not in covered]

    @property
    def coverage(self) -> float:
        if not self.rule_ids:
            return 100.0
        return round(100.0 * (1 - len(self.uncovered_rules) / len(self.rule_ids)), 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "passed": len(self.results) - len(self.failures),
            "failed": len(self.failures),
            "failures": [r.as_dict() for r in self.failures],
            "uncovered_rules": self.uncovered_rules,
            "coverage_percent": self.coverage,
        }


# -- loading -----------------------------------------------------------------------------------


def case_files(directory: Path) -> list[Path]:
    """Case files under `directory` (recursively), in a stable order."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in CASE_SUFFIXES)


def load_cases(path: Path) -> list[Case | CaseResult]:
    """The cases of one file; a case that cannot be read becomes a failed result."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        return [CaseResult(path.stem, source, [f"cannot read case file: {reason}"])]
    entries = data if isinstance(data, list) else [data]
    cases: list[Case | CaseResult] = []
    for position, entry in enumerate(entries):
        where = f"{source}[{position}]" if isinstance(data, list) else source
        try:
            cases.append(_case(entry, where))
        except CaseInvalid as exc:
            name = entry.get("name") if isinstance(entry, dict) else None
            cases.append(CaseResult(str(name or where), where, [f"invalid case: {exc}"]))
    return cases


def _case(entry: Any, where: str) -> Case:
    if not isinstance(entry, dict):
        raise CaseInvalid("a case must be an object with name, request and expect")
    unknown = sorted(set(entry) - {"name", "description", "request", "expect", "memory"})
    if unknown:
        raise CaseInvalid(f"unknown key '{unknown[0]}'")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise CaseInvalid("name must be a non-empty string")
    expect = entry.get("expect")
    if not isinstance(expect, dict) or not isinstance(expect.get("verdict"), str):
        raise CaseInvalid("expect.verdict is required")
    unknown = sorted(set(expect) - {"verdict", "reason_codes", "query_fields"})
    if unknown:
        raise CaseInvalid(f"unknown key 'expect.{unknown[0]}'")
    for key in ("reason_codes", "query_fields"):
        value = expect.get(key)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            raise CaseInvalid(f"expect.{key} must be a list of strings")
    if not isinstance(entry.get("request"), dict):
        raise CaseInvalid("request must be an object (a DecisionRequest)")
    memory = entry.get("memory") or []
    if not isinstance(memory, list) or not all(
        isinstance(m, dict) and isinstance(m.get("request"), dict) and m.get("label") in LABELS
        for m in memory
    ):
        raise CaseInvalid(f"memory must be a list of {{request, label ({'|'.join(LABELS)})}}")
    return Case(name, where, entry["request"], expect, tuple(memory))


# -- running -----------------------------------------------------------------------------------


def _normalized(request: dict[str, Any]) -> tuple[dict[str, Any], str]:
    filled = {"schema_version": "decision_request.v0", "context": PLACEHOLDER_CONTEXT, **request}
    normalized = normalize_request(filled)
    return normalized.persisted, normalized.tenant_id


def _memory(case: Case) -> MemoryIndex:
    items = []
    for position, seed in enumerate(case.memory):
        try:
            request, tenant = _normalized(seed["request"])
        except LumynError as exc:
            raise CaseInvalid(f"memory[{position}].request: {exc.one_line()}") from None
        items.append(MemoryItem(
            memory_id=f"case-memory-{position:06d}", tenant_id=tenant,
            action_type=request["action"]["type"], label=seed["label"],
            summary=str(seed.get("summary") or ""), features=request_features(request),
        ))
    return MemoryIndex(items)


def run_case(policy: CompiledPolicy, case: Case) -> CaseResult:
    result = CaseResult(case.name, case.source)
    try:
        index = _memory(case)
        try:
            request, tenant = _normalized(case.request)
        except LumynError as exc:
            raise CaseInvalid(f"request: {exc.one_line()}") from None
    except CaseInvalid as exc:
        result.problems.append(f"invalid case: {exc}")
        return result
    features = request_features(request)
    similarity = index.query(tenant, request["action"]["type"], features, TOP_K)
    body = assess(policy, request, tenant, similarity, policy.default_mode, TOP_K, features)
    result.verdict = body["verdict"]
    result.reason_codes = list(body["reason_codes"])
    result.matched_rules = [m["rule_id"] for m in body["matched_rules"] if m["stage"] != "DEFAULT"]
    expect = case.expect
    if result.verdict != expect["verdict"]:
        result.problems.append(f"verdict: expected {expect['verdict']}, got {result.verdict}")
    missing = [c for c in expect.get("reason_codes") or [] if c not in result.reason_codes]
    if missing:
        result.problems.append(f"reason_codes: expected {', '.join(missing)} among "
                               f"{', '.join(result.reason_codes)}")
    if "query_fields" in expect:
        got = sorted(q["field"] for q in body.get("queries") or [])
        wanted = sorted(expect["query_fields"] or [])
        if got != wanted:
            result.problems.append(f"query_fields: expected {wanted or 'none'}, got {got or 'none'}")
    return result


def run_cases(policy: CompiledPolicy, files: list[Path]) -> CaseReport:
    results = []
    for path in files:
        for case in load_cases(path):
            results.append(case if isinstance(case, CaseResult) else run_case(policy, case))
    rule_ids = [str(rule["id"]) for rule in policy.data.get("rules") or []]
    return CaseReport(policy.summary(), results, rule_ids)


def junit_xml(report: CaseReport, suite: str = "lumyn policy test") -> bytes:
    """JUnit XML (one testsuite, a testcase per case) for CI systems."""
    root = ElementTree.Element("testsuite", name=suite, tests=str(len(report.results)),
                               failures=str(len(report.failures)), errors="0", skipped="0")
    properties = ElementTree.SubElement(root, "properties")
    for key, value in report.policy.items():
        ElementTree.SubElement(properties, "property", name=key, value=value)
    ElementTree.SubElement(properties, "property", name="coverage_percent",
                           value=str(report.coverage))
    for result in report.results:
        case = ElementTree.SubElement(root, "testcase", classname=result.source, name=result.name)
        if result.problems:
            failure = ElementTree.SubElement(case, "failure", message=result.problems[0])
            failure.text = "\n".join(result.problems)
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))

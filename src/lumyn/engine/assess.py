"""Turn a persisted request + memory similarity into the deterministic body of a record.

`assess` is shared by live decisions and by replay, so a replay re-runs exactly this code.
It does no I/O: memory similarity is computed by the caller and passed in.
"""

from __future__ import annotations

from typing import Any

from lumyn.contracts.canonical import (
    canonical_plain_bytes_with,
    digest,
    json_number,
    plain_digest,
    sha256_digest,
)
from lumyn.engine.evaluate import Evaluation, evaluate
from lumyn.engine.features import amount_usd, build_facts
from lumyn.memory.features import memory_features
from lumyn.memory.index import Similarity
from lumyn.policy.model import EVALUATION_ORDER, CompiledPolicy
from lumyn.version import __version__

ENGINE_VERSION = __version__


def resolve_mode(request: dict[str, Any], configured: str | None, policy: CompiledPolicy) -> str:
    for source in (request.get("policy"), request.get("hints")):
        if isinstance(source, dict) and source.get("mode") in ("enforce", "advisory"):
            return str(source["mode"])
    return configured or policy.default_mode


def request_features(request: dict[str, Any]) -> tuple[str, ...]:
    return memory_features(request, amount_usd(request))


def uncertainty_score(policy: CompiledPolicy, request: dict[str, Any], evaluation: Evaluation,
                      failure_score: float) -> float:
    """0.05 base + 0.45 × share of required evidence missing + 0.35 × failure similarity
    + 0.15 when no rule matched (default fallback); clamped to [0, 1], 4 decimals."""
    required = policy.required_evidence.get(request["action"]["type"], ())
    missing_share = len(evaluation.missing_evidence) / len(required) if required else 0.0
    score = 0.05 + 0.45 * missing_share + 0.35 * failure_score
    if evaluation.defaulted:
        score += 0.15
    return round(min(1.0, max(0.0, score)), 4)


def assess(
    policy: CompiledPolicy,
    request: dict[str, Any],
    tenant_id: str,
    similarity: Similarity,
    mode: str,
    top_k: int,
    memory_tokens: tuple[str, ...] | None = None,
    request_json: bytes | None = None,
) -> dict[str, Any]:
    """Every record field except decision_id, created_at and schema_version.
    `memory_tokens` (request_features(request)) and `request_json` (the request's canonical
    bytes) save work when the caller has them."""
    failure, success = similarity.failure_score, similarity.success_score
    facts = build_facts(request, tenant_id, failure, success)
    evaluation = evaluate(policy, facts)
    considered = similarity.considered()
    snapshot = similarity.snapshot_digest()
    # Numbers in the record are written as JCS writes them (12.0 -> 12), see json_number.
    usd = facts.get("amount_usd")
    usd = None if usd is None else json_number(usd)
    failure, success = json_number(failure), json_number(success)
    features = {
        "amount_usd": usd,
        "missing_evidence": list(evaluation.missing_evidence),
        "memory_features": list(memory_tokens or request_features(request)),
        "failure_similarity_score": failure,
        "success_similarity_score": success,
    }
    body: dict[str, Any] = {
        "request": request,
        "policy": {**policy.summary(), "mode": mode},
        "verdict": evaluation.verdict,
        "reason_codes": list(evaluation.reason_codes),
        "matched_rules": list(evaluation.matched_rules),
        "risk_signals": {
            "uncertainty_score": json_number(
                uncertainty_score(policy, request, evaluation, failure)
            ),
            "failure_similarity": {
                "score": failure,
                "top_k": [
                    {"memory_id": m.item.memory_id, "label": m.item.label,
                     "score": json_number(m.score),
                     "summary": m.item.summary}
                    for m in similarity.top_k
                ],
            },
        },
    }
    if evaluation.verdict == "QUERY":
        body["queries"] = [q.as_dict() for q in evaluation.queries]
    if evaluation.obligations:
        body["obligations"] = [dict(o) for o in evaluation.obligations]
    body["explanation"] = {
        "summary": _summary(evaluation, mode),
        "details": {
            "amount_usd": usd,
            "missing_evidence": list(evaluation.missing_evidence),
            "success_similarity_score": success,
            "memory_considered": [item.memory_id for item in considered],
            "memory_top_k": top_k,
        },
    }
    if isinstance(request.get("trace"), dict):
        body["trace"] = request["trace"]
    body["determinism"] = {
        "engine_version": ENGINE_VERSION,
        "evaluation_order": list(EVALUATION_ORDER),
        "inputs_digest": _inputs_digest(request, features, snapshot, request_json),
        "memory_snapshot": snapshot,
    }
    return body


def _inputs_digest(request: dict[str, Any], features: dict[str, Any], snapshot: str,
                   request_json: bytes | None) -> str:
    inputs = {"features": features, "memory_snapshot": snapshot}
    if request_json is None:
        return plain_digest({**inputs, "request": request})
    return sha256_digest(canonical_plain_bytes_with(inputs, "request", request_json))


def _summary(evaluation: Evaluation, mode: str) -> str:
    fired = ", ".join(
        f"{rule['rule_id']} ({rule['stage']})" for rule in evaluation.matched_rules
    )
    text = f"{evaluation.verdict}: {', '.join(evaluation.reason_codes)} — rules: {fired}"
    if evaluation.missing_evidence:
        text += f"; missing evidence: {', '.join(evaluation.missing_evidence)}"
    if mode == "advisory":
        text += " (advisory mode: not enforced)"
    return text


def storage_unavailable_body(
    policy: CompiledPolicy, request: dict[str, Any], mode: str, detail: str
) -> dict[str, Any]:
    """The fail-closed record returned when the decision cannot be made durable."""
    return {
        "request": request,
        "policy": {**policy.summary(), "mode": mode},
        "verdict": "ABSTAIN",
        "reason_codes": ["STORAGE_UNAVAILABLE"],
        "matched_rules": [
            {"rule_id": "STORAGE_UNAVAILABLE", "stage": "DEFAULT", "effect": "ABSTAIN",
             "reason_codes": ["STORAGE_UNAVAILABLE"]}
        ],
        "risk_signals": {"uncertainty_score": 1.0, "failure_similarity": {"score": 0.0, "top_k": []}},
        "explanation": {
            "summary": "ABSTAIN: STORAGE_UNAVAILABLE — the decision could not be made durable; "
            "do not perform the action",
            "details": {"storage_error": detail},
        },
        "determinism": {
            "engine_version": ENGINE_VERSION,
            "evaluation_order": list(EVALUATION_ORDER),
            "inputs_digest": digest({"request": request, "storage_unavailable": True}),
        },
    }

"""Shadow mode: every decision is also evaluated under a second policy, for comparison only.

The record keeps the live verdict (nothing is enforced from the shadow) and carries the
shadow's answer in `extensions.shadow`; `lumyn diff --shadow` summarises them. It costs one
extra evaluation over facts the decision already derived, and no I/O.
"""

from __future__ import annotations

from typing import Any

from lumyn.engine.evaluate import evaluate
from lumyn.engine.features import build_facts
from lumyn.memory.index import Similarity
from lumyn.policy import CompiledPolicy


def shadow_extension(shadow: CompiledPolicy, request: dict[str, Any], tenant_id: str,
                     similarity: Similarity) -> dict[str, Any]:
    """`extensions.shadow` of a record: the shadow policy's verdict on the same request,
    with the same memory signals the live evaluation saw."""
    facts = build_facts(request, tenant_id, similarity.failure_score, similarity.success_score)
    result = evaluate(shadow, facts)
    return {**shadow.summary(), "verdict": result.verdict,
            "reason_codes": list(result.reason_codes)}

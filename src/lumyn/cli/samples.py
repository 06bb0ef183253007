"""The sample DecisionRequest `lumyn init` leaves at WORKSPACE/examples/request.json.

It fits the workspace's policy: each bundled pack has a request its TRUST path accepts; any
other policy gets a request for its first action type with every required evidence key filled
in (dotted keys as nested objects), so `lumyn decide --in` works on it straight away.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumyn.cli.common import CliError, dumps, write_file
from lumyn.contracts.canonical import digest

if TYPE_CHECKING:
    from lumyn.policy import CompiledPolicy

EXAMPLE_FILE = Path("examples") / "request.json"
TENANT = "acme"

# Per bundled pack: the action and the evidence of a request the pack trusts.
PACK_SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "lumyn-support": (
        {"type": "support.refund", "intent": "Refund duplicate charge for order 82731",
         "target": {"system": "stripe", "resource_type": "charge", "resource_id": "ch_82731"},
         "amount": {"value": 12.0, "currency": "USD"}, "tags": ["duplicate_charge"]},
        {"ticket_id": "ZD-1001", "order_id": "82731", "customer_id": "C-9",
         "customer_age_days": 180, "previous_refund_count_90d": 0, "chargeback_risk": 0.05,
         "payment_instrument_risk": "low"},
    ),
    "lumyn-account": (
        {"type": "account.change_email", "intent": "Change the login email of user U-42",
         "target": {"system": "auth0", "resource_type": "user", "resource_id": "U-42"}},
        {"user_id": "U-42", "new_email": "new-address@example.com",
         "verification_method": "email_link", "account_takeover_risk": 0.1},
    ),
    "lumyn-billing": (
        {"type": "billing.approve_spend", "intent": "Pay invoice INV-3001 for monitoring seats",
         "target": {"system": "netsuite", "resource_type": "invoice", "resource_id": "INV-3001"},
         "amount": {"value": 80.0, "currency": "USD"}, "tags": ["saas_renewal"]},
        {"invoice_id": "INV-3001", "vendor_id": "V-77", "requested_by": "ops-lead"},
    ),
}


def sample_request(policy: CompiledPolicy) -> dict[str, Any]:
    if policy.policy_id in PACK_SAMPLES:
        action, evidence = PACK_SAMPLES[policy.policy_id]
    else:
        action_type = next(iter(policy.required_evidence), "support.refund")
        action = {"type": action_type, "intent": f"Example {action_type} request"}
        evidence = {}
        for key in policy.required_evidence.get(action_type, ()):
            *parents, leaf = key.split(".")
            node = evidence
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = f"example-{leaf}"
    context = {"ticket_summary": action["intent"]}
    return {
        "schema_version": "decision_request.v0",
        "subject": {"type": "service", "id": "example-agent", "tenant_id": TENANT},
        "action": action,
        "evidence": evidence,
        # digest_only: the caller keeps the context and sends its digest (a real one here).
        "context": {"mode": "digest_only", "digest": digest(context)},
    }


def write_example(workspace: Path, policy: CompiledPolicy, *, force: bool = False) -> str:
    """Put the sample at WORKSPACE/examples/request.json unless one is there; what was done."""
    dest = workspace / EXAMPLE_FILE
    if dest.exists() and not force:
        return f"kept {dest}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError("WORKSPACE_UNWRITABLE", f"cannot create {dest.parent}: "
                       f"{exc.strerror or exc}", field="workspace") from None
    write_file(str(dest), (dumps(sample_request(policy)) + "\n").encode("utf-8"), field="workspace")
    return f"created {dest}"

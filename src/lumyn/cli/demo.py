"""`lumyn demo` and `lumyn demo --story`: real decisions, stored in the workspace.

Both use the bundled support pack (so the story is the same everywhere): in the workspace when
its policy is that pack, in WORKSPACE/demo when it has another (the demo never writes support
refunds into a billing workspace). A fresh demo tenant per run (`demo-<ulid>`) keeps Experience
Memory from earlier runs out, and the printed decision ids can be shown, explained, exported
and replayed afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumyn.cli.common import (
    DB_FILE,
    POLICY_FILE,
    CliError,
    emit_json,
    ensure_writable,
    err,
    out,
    workspace_config,
    ws_flag,
)
from lumyn.cli.render import table

if TYPE_CHECKING:
    from lumyn.sdk import Lumyn

FAILURE_CODE = "FAILURE_MEMORY_SIMILAR_ESCALATE"
SUPPORT_POLICY_ID = "lumyn-support"
DEMO_SUBDIR = "demo"
STORY_LABEL_SUMMARY = "Refund went to a stolen card; chargeback two days later (demo)"


def refund_request(tenant: str, *, ticket: str, order: str, customer: str, amount: float,
                   **evidence: Any) -> dict[str, Any]:
    from lumyn.contracts.canonical import digest

    ev: dict[str, Any] = {
        "ticket_id": ticket,
        "order_id": order,
        "customer_id": customer,
        "customer_age_days": 180,
        "previous_refund_count_90d": 0,
        "chargeback_risk": 0.05,
        "payment_instrument_risk": "low",
    }
    ev.update(evidence)
    ev = {k: v for k, v in ev.items() if v is not None}
    return {
        "schema_version": "decision_request.v0",
        "subject": {"type": "service", "id": "support-agent", "tenant_id": tenant},
        "action": {
            "type": "support.refund",
            "intent": f"Refund duplicate charge for order {order}",
            "target": {"system": "stripe", "resource_type": "charge", "resource_id": f"ch_{order}"},
            "amount": {"value": amount, "currency": "USD"},
            "tags": ["duplicate_charge"],
        },
        "evidence": ev,
        "context": {"mode": "digest_only",
                    "digest": digest({"ticket": ticket, "order": order, "demo": tenant})},
    }


def demo_requests(tenant: str) -> list[dict[str, Any]]:
    from lumyn.contracts.canonical import digest

    close_ticket = {
        "schema_version": "decision_request.v0",
        "subject": {"type": "agent", "id": "triage-bot", "tenant_id": tenant},
        "action": {"type": "support.close_ticket", "intent": "Close solved ticket ZD-2040",
                   "target": {"system": "zendesk", "resource_type": "ticket",
                              "resource_id": "ZD-2040"}},
        "evidence": {"ticket_id": "ZD-2040", "resolution_code": "solved"},
        "context": {"mode": "digest_only", "digest": digest({"ticket": "ZD-2040", "demo": tenant})},
    }
    return [
        refund_request(tenant, ticket="ZD-1001", order="82731", customer="C-9", amount=12.0),
        refund_request(tenant, ticket="ZD-1002", order="82732", customer="C-11", amount=201.0),
        refund_request(tenant, ticket="ZD-1003", order="82733", customer="C-12", amount=18.0,
                       order_id=None),  # missing evidence -> QUERY
        refund_request(tenant, ticket="ZD-1004", order="82734", customer="C-13", amount=9.0,
                       payment_instrument_risk="high"),
        close_ticket,
    ]


def _demo_lumyn(workspace: str, config_path: str | None) -> tuple[Lumyn, str, str | None]:
    """A Lumyn with the bundled support pack, the workspace it stores into and, when that is
    not WORKSPACE itself, a line saying why.

    The demo's refunds fit a workspace whose policy is the support pack (or that has no
    policy yet: it gets the pack, as `lumyn init` would). A workspace with another policy
    (billing, account, its own) is left untouched: the demo uses WORKSPACE/demo instead."""
    from lumyn.cli.ops import template_text, write_policy
    from lumyn.cli.samples import write_example
    from lumyn.policy import bundled_policy_path, load_policy
    from lumyn.sdk import Lumyn

    ws = Path(workspace)
    note = None
    config = workspace_config(workspace, config_path)
    if config.policy_path and Path(config.policy_path).exists():
        policy_id = load_policy(config.policy_path).policy_id
        if policy_id != SUPPORT_POLICY_ID:
            demo_ws = ws / DEMO_SUBDIR
            note = (f"{ws}'s policy is {policy_id}, which the demo's support refunds do not fit: "
                    f"they go to the separate demo workspace {demo_ws}")
            ws, workspace = demo_ws, str(demo_ws)
            # Its own SQLite file, whatever storage the workspace is configured with.
            config = workspace_config(workspace, config_path).with_overrides(
                storage_url="sqlite:///" + str(demo_ws / DB_FILE))
    if not (ws / POLICY_FILE).exists() and not config.policy_path:
        _, text, policy = template_text("support")
        write_policy(ws, text, force=False)
        write_example(ws, policy)
    ensure_writable(config, workspace)
    store_config = config.with_overrides(policy_path=str(bundled_policy_path()))
    return Lumyn(store_config), workspace, note


def _tenant() -> str:
    from lumyn.contracts.ids import new_id

    return f"demo-{new_id()}"


def _decide(lumyn: Lumyn, request: dict[str, Any]) -> dict[str, Any]:
    record = lumyn.decide(request)
    if "STORAGE_UNAVAILABLE" in record["reason_codes"]:
        detail = (record.get("explanation") or {}).get("details", {}).get("storage_error", "")
        raise CliError("STORAGE_UNAVAILABLE", f"demo decisions could not be stored: {detail}",
                       field="storage_url")
    return record


def cmd_demo(story: bool, workspace: str, config_path: str | None) -> int:
    if story:
        return cmd_story(workspace, config_path)
    tenant = _tenant()
    lumyn, workspace, note = _demo_lumyn(workspace, config_path)
    with lumyn:
        records = [_decide(lumyn, request) for request in demo_requests(tenant)]
    emit_json(records)
    if note:
        err(note)
    flag = ws_flag(workspace)
    err(f"{len(records)} demo decisions stored under tenant {tenant} in {lumyn.store.url}: "
        + ", ".join(f"{r['verdict']} {r['decision_id']}" for r in records))
    err(f"Try: lumyn explain {records[1]['decision_id']}{flag}")
    return 0


def _rules(record: dict[str, Any]) -> list[str]:
    return [f"{r['rule_id']} ({r['stage']})" for r in record["matched_rules"]]


def _matches(record: dict[str, Any]) -> list[str]:
    top = record["risk_signals"]["failure_similarity"]["top_k"]
    return [f"{m['label']} {m['score']:g} {m['memory_id']}" for m in top] or ["none"]


def cmd_story(workspace: str, config_path: str | None) -> int:
    tenant = _tenant()
    first_request = refund_request(tenant, ticket="ZD-1001", order="82731", customer="C-9",
                                   amount=12.0)
    second_request = refund_request(tenant, ticket="ZD-1077", order="82790", customer="C-17",
                                    amount=14.0)
    lumyn, workspace, note = _demo_lumyn(workspace, config_path)
    with lumyn:
        before = _decide(lumyn, first_request)
        label = lumyn.label(before["decision_id"], "failure", STORY_LABEL_SUMMARY)
        after = _decide(lumyn, second_request)
        url = lumyn.store.url

    if before["verdict"] != "TRUST" or after["verdict"] != "ESCALATE" \
            or FAILURE_CODE not in after["reason_codes"]:
        raise CliError(
            "DEMO_FAILED",
            f"expected TRUST then ESCALATE with {FAILURE_CODE}, got {before['verdict']} then "
            f"{after['verdict']} {after['reason_codes']} (is LUMYN_TOP_K or the config unusual?)",
            field="demo",
        )
    added = [c for c in after["reason_codes"] if c not in before["reason_codes"]]
    removed = [c for c in before["reason_codes"] if c not in after["reason_codes"]]
    b_id, a_id = before["decision_id"], after["decision_id"]
    flag = ws_flag(workspace)

    out("Lumyn demo: Experience Memory compounding")
    out(f"  tenant {tenant}, store {url}, policy lumyn-support (bundled)")
    if note:
        out(f"  note: {note}")
    out("")
    out(f"1. A $12 refund with complete evidence and low risk signals is decided: "
        f"{before['verdict']}")
    out(f"2. Its outcome is labeled a failure: \"{STORY_LABEL_SUMMARY}\"")
    out(f"   (label event {label['event_id']} -> memory item {label['data']['memory_id']})")
    out(f"3. A similar $14 refund (another ticket, order and customer) is decided: "
        f"{after['verdict']}")
    out("")
    out(table(
        [
            ["decision_id", b_id, a_id],
            ["verdict", before["verdict"], after["verdict"]],
            ["reason_codes", before["reason_codes"], after["reason_codes"]],
            ["matched_rules", _rules(before), _rules(after)],
            ["failure_similarity", f"{before['risk_signals']['failure_similarity']['score']:g}",
             f"{after['risk_signals']['failure_similarity']['score']:g}"],
            ["uncertainty_score", f"{before['risk_signals']['uncertainty_score']:g}",
             f"{after['risk_signals']['uncertainty_score']:g}"],
            ["memory matches", _matches(before), _matches(after)],
        ],
        headers=["", "BEFORE (1)", "AFTER (3)"],
    ))
    out("")
    out("Reason codes that changed:")
    for code in added:
        out(f"  + {code}")
    for code in removed:
        out(f"  - {code}")
    out("")
    out("Same policy, same kind of request: the labeled failure alone turned TRUST into ESCALATE.")
    out("")
    out("Next, try:")
    out(f"  lumyn show {a_id}{flag}")
    out(f"  lumyn explain {a_id} --markdown{flag}")
    out(f"  lumyn export {a_id} --pack --out decision_pack.zip{flag}")
    out("  lumyn replay decision_pack.zip --markdown")
    return 0

"""What the gate and the MCP gateway share: the decider they talk to, the typed refusals,
the text a model can act on, and the outcome event written after a trusted call."""

from __future__ import annotations

from typing import Any, Protocol

TRUST = "TRUST"
DECISION_META_KEY = "lumyn/decision_id"
MAX_ERROR_TEXT = 2000


class Decider(Protocol):
    """What a `Lumyn` object and a `lumyn.client.Client` both offer."""

    def decide(self, request: Any) -> dict[str, Any]: ...

    def append_event(self, decision_id: str, event_type: str,
                     data: dict[str, Any] | None = None) -> dict[str, Any]: ...


class NotTrusted(Exception):
    """The decision was not TRUST, so the guarded code did not run. Carries the record."""

    def __init__(self, record: dict[str, Any], resolution: dict[str, Any] | None = None) -> None:
        self.record = record
        self.resolution = resolution
        super().__init__(refusal_text(record, resolution=resolution))

    @property
    def decision_id(self) -> str:
        return str(self.record["decision_id"])

    @property
    def verdict(self) -> str:
        return str(self.record["verdict"])

    @property
    def reason_codes(self) -> list[str]:
        return list(self.record.get("reason_codes") or [])

    @property
    def queries(self) -> list[dict[str, Any]]:
        return list(self.record.get("queries") or [])


class Escalated(NotTrusted):
    """ESCALATE: a person must approve (or approved nothing in time, or denied)."""


class NeedsEvidence(NotTrusted):
    """QUERY: evidence is missing; `queries` says what to supply."""


class Blocked(NotTrusted):
    """ABSTAIN: a hard stop (or the decision could not be made durably)."""


_BY_VERDICT: dict[str, type[NotTrusted]] = {
    "ESCALATE": Escalated, "QUERY": NeedsEvidence, "ABSTAIN": Blocked,
}


def not_trusted(record: dict[str, Any], resolution: dict[str, Any] | None = None) -> NotTrusted:
    return _BY_VERDICT.get(str(record.get("verdict")), Blocked)(record, resolution)


def refusal_text(record: dict[str, Any], *, action: str = "the action",
                 resolution: dict[str, Any] | None = None) -> str:
    """One paragraph a model (or a person reading a log) can act on."""
    verdict = record.get("verdict")
    codes = ", ".join(record.get("reason_codes") or []) or "no reason code"
    head = (f"Lumyn did not run {action}: verdict {verdict} ({codes}); "
            f"decision id {record.get('decision_id')}.")
    if resolution is not None and resolution.get("status") == "denied":
        reason = resolution.get("reason") or "no reason given"
        who = resolution.get("actor") or "a reviewer"
        return f"{head} {who} denied it: {reason}. Do not retry it unchanged."
    if verdict == "ESCALATE":
        waiting = " It is still waiting for approval." if resolution is not None else ""
        return (f"{head} A person must approve this action before it can run.{waiting} "
                "Once it is approved, retry the same call with the same arguments.")
    if verdict == "QUERY":
        asks = "; ".join(f"{q.get('question')} ({q.get('field')})"
                         for q in record.get("queries") or [])
        return f"{head} Missing evidence; answer and call again with it: {asks or 'see the record'}."
    return f"{head} This action is blocked; do not retry it unchanged."


def outcome_data(success: bool, error: str | None = None, **about: Any) -> dict[str, Any]:
    """The `outcome` event's data: success, or failure with the error text."""
    data: dict[str, Any] = {"status": "success" if success else "failure", **about}
    if error is not None:
        data["error"] = error[:MAX_ERROR_TEXT]
    return data

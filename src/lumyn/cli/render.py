"""Human renderings: explain (text and Markdown), replay reports, side-by-side tables.

Plain aligned text, no terminal-width wrapping, so the same record always renders to the same
bytes (stable enough to diff and to paste into tickets).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lumyn.packs import Difference, ReplayReport

Cell = str | Sequence[str]


def table(rows: Sequence[Sequence[Cell]], headers: Sequence[str] | None = None,
          indent: str = "  ", gap: str = "  ") -> str:
    """Aligned columns; a cell may be a list of lines (the row grows to the tallest cell)."""
    all_rows: list[list[list[str]]] = []
    if headers:
        all_rows.append([[h] for h in headers])
    for row in rows:
        all_rows.append([[cell] if isinstance(cell, str) else list(cell) or ["-"] for cell in row])
    if not all_rows:
        return ""
    columns = max(len(r) for r in all_rows)
    widths = [0] * columns
    for row in all_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in cell))
    lines: list[str] = []
    for row in all_rows:
        height = max(len(cell) for cell in row)
        for h in range(height):
            parts = []
            for i in range(columns):
                cell = row[i] if i < len(row) else [""]
                parts.append((cell[h] if h < len(cell) else "").ljust(widths[i]))
            lines.append((indent + gap.join(parts)).rstrip())
    return "\n".join(lines)


def compact(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _amount(request: dict[str, Any], details: dict[str, Any]) -> str:
    amount = (request.get("action") or {}).get("amount")
    if not isinstance(amount, dict):
        return "-"
    text = f"{_num(amount.get('value'))} {amount.get('currency', '')}".strip()
    usd = details.get("amount_usd")
    if usd is not None and amount.get("currency") != "USD":
        text += f" (= {_num(usd)} USD)"
    return text


def _subject(request: dict[str, Any]) -> str:
    from lumyn.engine.normalize import tenant_of

    subject = request.get("subject") or {}
    tenant = tenant_of(request) or "(global)"
    return f"{subject.get('type')} {subject.get('id')} (tenant {tenant})"


def _details(record: dict[str, Any]) -> dict[str, Any]:
    details = (record.get("explanation") or {}).get("details")
    return details if isinstance(details, dict) else {}


def _event_line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    if event.get("type") == "label":
        text = f"{data.get('label')}"
        if data.get("summary"):
            text += f" {compact(data['summary'])}"
        if data.get("memory_id"):
            text += f" (memory {data['memory_id']})"
        return text
    return compact(data)


def digests(record: dict[str, Any]) -> list[tuple[str, str]]:
    determinism = record.get("determinism") or {}
    return [
        ("policy_hash", str((record.get("policy") or {}).get("policy_hash"))),
        ("context.digest", str(((record.get("request") or {}).get("context") or {}).get("digest"))),
        ("inputs_digest", str(determinism.get("inputs_digest"))),
        ("memory_snapshot", str(determinism.get("memory_snapshot", "-"))),
        ("engine_version", str(determinism.get("engine_version"))),
    ]


# -- explain ------------------------------------------------------------------------------------


def explain_text(record: dict[str, Any]) -> str:
    request = record.get("request") or {}
    action = request.get("action") or {}
    policy = record.get("policy") or {}
    details = _details(record)
    risk = record.get("risk_signals") or {}
    failure = risk.get("failure_similarity") or {}
    decision_id = record.get("decision_id")
    parts: list[str] = [f"Decision {decision_id}"]
    parts.append(table([
        ["created", str(record.get("created_at"))],
        ["verdict", f"{record.get('verdict')}  (mode: {policy.get('mode')})"],
        ["reason codes", ", ".join(record.get("reason_codes") or [])],
        ["summary", str((record.get("explanation") or {}).get("summary", "-"))],
        ["action", f"{action.get('type')}: {action.get('intent')}"],
        ["subject", _subject(request)],
        ["amount", _amount(request, details)],
        ["policy", f"{policy.get('policy_id')} {policy.get('policy_version')}"],
    ]))

    parts.append("\nWhy (matched rules, in evaluation order)")
    parts.append(table(
        [[r.get("rule_id", ""), r.get("stage", ""), r.get("effect", ""),
          ", ".join(r.get("reason_codes") or [])] for r in record.get("matched_rules") or []],
        headers=["RULE", "STAGE", "EFFECT", "REASON CODES"],
    ))

    missing = details.get("missing_evidence") or []
    parts.append("\nMissing evidence")
    parts.append("  " + (", ".join(missing) if missing else "none"))
    queries = record.get("queries") or []
    if queries:
        parts.append("\nQueries (answer these, then decide again)")
        parts.append(table([[q.get("field", ""), q.get("question", "")] for q in queries]))
    obligations = record.get("obligations") or []
    if obligations:
        parts.append("\nObligations")
        parts.extend(f"  {compact(o)}" for o in obligations)

    parts.append("\nRisk signals")
    signal_rows = [
        ["uncertainty_score", _num(risk.get("uncertainty_score"))],
        ["failure_similarity", _num(failure.get("score"))],
    ]
    if "success_similarity_score" in details:
        signal_rows.append(["success_similarity", _num(details["success_similarity_score"])])
    for key in ("ood_score", "drift_flag"):
        if key in risk:
            signal_rows.append([key, _num(risk[key])])
    parts.append(table(signal_rows))

    top = failure.get("top_k") or []
    parts.append("\nMemory matches (Experience Memory, top k)")
    if top:
        parts.append(table(
            [[m.get("memory_id", ""), m.get("label", ""), _num(m.get("score")),
              m.get("summary", "")] for m in top],
            headers=["MEMORY_ID", "LABEL", "SCORE", "SUMMARY"],
        ))
    else:
        parts.append("  none")

    events = record.get("decision_event_log") or []
    if events:
        parts.append("\nEvents")
        parts.append(table([[e.get("at", ""), e.get("type", ""), _event_line(e)] for e in events]))

    parts.append("\nDigests")
    parts.append(table([[k, v] for k, v in digests(record)]))
    return "\n".join(parts) + "\n"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(_md(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def _codes(codes: Sequence[str]) -> str:
    return ", ".join(f"`{c}`" for c in codes) or "-"


def explain_markdown(record: dict[str, Any]) -> str:
    request = record.get("request") or {}
    action = request.get("action") or {}
    policy = record.get("policy") or {}
    details = _details(record)
    risk = record.get("risk_signals") or {}
    failure = risk.get("failure_similarity") or {}
    decision_id = record.get("decision_id")
    out: list[str] = [f"### Lumyn decision `{decision_id}`: **{record.get('verdict')}**", ""]
    out.append(_md_table(["Field", "Value"], [
        ["Created", record.get("created_at")],
        ["Verdict", f"**{record.get('verdict')}** (mode `{policy.get('mode')}`)"],
        ["Reason codes", _codes(record.get("reason_codes") or [])],
        ["Action", f"`{action.get('type')}`: {action.get('intent')}"],
        ["Subject", _subject(request)],
        ["Amount", _amount(request, details)],
        ["Policy", f"`{policy.get('policy_id')}` {policy.get('policy_version')}"],
        ["Summary", (record.get("explanation") or {}).get("summary", "-")],
    ]))
    out += ["", "#### Why (matched rules, in evaluation order)", ""]
    out.append(_md_table(["Rule", "Stage", "Effect", "Reason codes"], [
        [f"`{r.get('rule_id')}`", r.get("stage"), r.get("effect"), _codes(r.get("reason_codes") or [])]
        for r in record.get("matched_rules") or []
    ]))
    missing = details.get("missing_evidence") or []
    out += ["", "#### Missing evidence", "",
            ", ".join(f"`{m}`" for m in missing) if missing else "None."]
    queries = record.get("queries") or []
    if queries:
        out += ["", "#### Queries", ""]
        out.append(_md_table(["Field", "Question"],
                             [[f"`{q.get('field')}`", q.get("question")] for q in queries]))
    obligations = record.get("obligations") or []
    if obligations:
        out += ["", "#### Obligations", ""]
        out.extend(f"- `{compact(o)}`" for o in obligations)
    out += ["", "#### Risk signals and Experience Memory", ""]
    out.append(f"- uncertainty_score: {_num(risk.get('uncertainty_score'))}")
    out.append(f"- failure_similarity: {_num(failure.get('score'))}")
    top = failure.get("top_k") or []
    if top:
        out.append("")
        out.append(_md_table(["Memory id", "Label", "Score", "Summary"], [
            [f"`{m.get('memory_id')}`", m.get("label"), _num(m.get("score")), m.get("summary")]
            for m in top
        ]))
    else:
        out.append("- memory matches: none")
    events = record.get("decision_event_log") or []
    if events:
        out += ["", "#### Events", ""]
        out.append(_md_table(["At", "Type", "Data"],
                             [[e.get("at"), e.get("type"), _event_line(e)] for e in events]))
    out += ["", "#### Digests", ""]
    out.append(_md_table(["Digest", "Value"], [[k, f"`{v}`"] for k, v in digests(record)]))
    out += ["", f"Replay: `lumyn export {decision_id} --pack --out decision_pack.zip && "
            "lumyn replay decision_pack.zip`"]
    return "\n".join(out) + "\n"


# -- replay -------------------------------------------------------------------------------------


def _diff_rows(differences: Sequence[Difference]) -> list[list[str]]:
    return [
        [d.path,
         compact(d.recorded) if d.recorded_present else "(absent)",
         compact(d.replayed) if d.replayed_present else "(absent)"]
        for d in differences
    ]


def _diff_lines(differences: Sequence[Difference]) -> list[str]:
    return [f"  {path}: {a} -> {b}" for path, a, b in _diff_rows(differences)]


def _verdict(outcome: dict[str, Any]) -> str:
    return f"{outcome.get('verdict', '-')}  {', '.join(outcome.get('reason_codes') or [])}"


def replay_text(report: ReplayReport) -> str:
    record = report.record or {}
    policy = record.get("policy") or {}
    status = "PASS" if report.ok else "FAIL"
    parts = [f"Replay of {report.source}: {status}"]
    summary_rows = [
        ["decision", f"{record.get('decision_id', '-')}  (created {record.get('created_at', '-')})"],
        ["policy", f"{policy.get('policy_id', '-')} {policy.get('policy_version', '')} "
                   f"{policy.get('policy_hash', '')}".rstrip()],
        ["recorded", _verdict(record)],
    ]
    if report.replayed is not None:
        summary_rows.append(["replayed", _verdict(report.replayed)])
    parts.append(table(summary_rows))
    parts.append("\nChecks")
    parts.append(table([["ok" if c.ok else "FAIL", c.name, c.detail] for c in report.checks]))
    if report.differences:
        parts.append("\nDifferences (field: recorded -> replayed)")
        parts.extend(_diff_lines(report.differences))
    for note in report.notes:
        parts.append(f"\nNote: {note}")
    if report.what_if is not None:
        w = report.what_if
        parts.append(f"\nWhat-if: {w.source} ({w.policy['policy_id']} {w.policy['policy_version']} "
                     f"{w.policy['policy_hash']})")
        parts.append(table([
            ["recorded", _verdict(record)],
            ["would be", _verdict(w.outcome)],
            ["rules", ", ".join(f"{r['rule_id']} ({r['stage']})"
                                for r in w.outcome.get("matched_rules") or [])],
        ]))
        if w.differences:
            parts.append("  differences (field: recorded -> other policy)")
            parts.extend("  " + line for line in _diff_lines(w.differences))
        else:
            parts.append("  same verdict, reason codes, rules and risk signals as recorded")
    return "\n".join(parts) + "\n"


def replay_markdown(report: ReplayReport) -> str:
    record = report.record or {}
    policy = record.get("policy") or {}
    request = record.get("request") or {}
    action = request.get("action") or {}
    status = ("PASS: replay reproduces the record" if report.ok
              else "FAIL: replay does not reproduce the record")
    out = [f"### Lumyn replay of decision `{record.get('decision_id', '-')}`: {status}", ""]
    rows: list[list[Any]] = [
        ["Pack", f"`{report.source}`"],
        ["Created", record.get("created_at", "-")],
        ["Action", f"`{action.get('type')}`: {action.get('intent')}" if action else "-"],
        ["Subject", _subject(request) if request else "-"],
        ["Policy", f"`{policy.get('policy_id')}` {policy.get('policy_version')} "
                   f"`{policy.get('policy_hash')}`"],
        ["Recorded verdict", f"**{record.get('verdict', '-')}** "
                             f"{_codes(record.get('reason_codes') or [])}"],
    ]
    if report.replayed is not None:
        rows.append(["Replayed verdict", f"**{report.replayed.get('verdict')}** "
                                         f"{_codes(report.replayed.get('reason_codes') or [])}"])
    out.append(_md_table(["Field", "Value"], rows))
    out += ["", "#### Checks", ""]
    out.extend(f"- [{'x' if c.ok else ' '}] **{c.name}**: {_md(c.detail)}" for c in report.checks)
    if record.get("matched_rules"):
        out += ["", "#### Matched rules (recorded)", ""]
        out.append(_md_table(["Rule", "Stage", "Effect", "Reason codes"], [
            [f"`{r.get('rule_id')}`", r.get("stage"), r.get("effect"), _codes(r.get("reason_codes") or [])]
            for r in record.get("matched_rules") or []
        ]))
    if report.memory:
        out += ["", "#### Experience Memory in the pack", ""]
        out.append(_md_table(["Memory id", "Label", "Summary", "Source decision"], [
            [f"`{m.get('memory_id')}`", m.get("label"), m.get("summary"), m.get("source_decision_id")]
            for m in report.memory
        ]))
    if report.differences:
        out += ["", "#### Differences", ""]
        out.append(_md_table(["Field", "Recorded", "Replayed"],
                             [[f"`{a}`", f"`{b}`", f"`{c}`"] for a, b, c in _diff_rows(report.differences)]))
    for note in report.notes:
        out += ["", f"> Note: {note}"]
    if report.what_if is not None:
        w = report.what_if
        out += ["", f"#### What-if: `{w.source}` (`{w.policy['policy_id']}` "
                    f"{w.policy['policy_version']})", ""]
        out.append(f"Would decide **{w.outcome.get('verdict')}** "
                   f"{_codes(w.outcome.get('reason_codes') or [])} (recorded **{record.get('verdict')}**).")
        if w.differences:
            out += [""]
            out.append(_md_table(["Field", "Recorded", "Other policy"],
                                 [[f"`{a}`", f"`{b}`", f"`{c}`"] for a, b, c in _diff_rows(w.differences)]))
    det = record.get("determinism") or {}
    out += ["", "#### Digests", ""]
    out.append(_md_table(["Digest", "Value"], [
        ["policy_hash", f"`{policy.get('policy_hash')}`"],
        ["inputs_digest", f"`{det.get('inputs_digest')}`"],
        ["memory_snapshot", f"`{det.get('memory_snapshot')}`"],
    ]))
    return "\n".join(out) + "\n"
